"""Near-duplicate search: multi-index hashing gives exactly the brute-force answer, at any worker count."""

import itertools

import numpy as np
import pytest

from imdd_build.dedupe import duplicate_groups
from imdd_build.nearsearch import MAX_TABLES, blocks, near_pairs, plan, unique_pairs


def _hashes(seed: int, n: int = 240, near: int = 120, max_flip: int = 14, equal: int = 12) -> list[int]:
    """Random hashes, near copies of some of them (0..max_flip bits flipped), and exact repeats."""
    rng = np.random.default_rng(seed)
    base = [int(x) for x in rng.integers(0, 2**64, n, dtype=np.uint64)]
    out = list(base)
    for h in base[:near]:
        flips = rng.choice(64, int(rng.integers(0, max_flip + 1)), replace=False)
        out.append(h ^ sum(1 << int(b) for b in flips))
    out += out[:equal]
    return out


def _brute(hashes: list[int], radius: int) -> list[tuple[int, int]]:
    return [(i, j) for i, j in itertools.combinations(range(len(hashes)), 2)
            if (hashes[i] ^ hashes[j]).bit_count() <= radius]


@pytest.mark.parametrize("radius", range(0, 21))
def test_equals_brute_force_at_every_radius_and_worker_count(radius):
    hashes = _hashes(radius)
    brute = _brute(hashes, radius)
    assert brute  # the input does hold pairs to find
    for workers in (1, 3):
        assert [tuple(p) for p in near_pairs(hashes, radius, workers=workers).tolist()] == brute


@pytest.mark.parametrize("radius", [1, 3, 6, 9])
def test_every_table_plan_gives_the_same_pairs(radius):
    """Forcing each number of blocks per key (including keys folded into 32 bits, and the all-pairs
    fallback) changes the work, never the answer."""
    hashes = _hashes(100 + radius)
    u = np.unique(np.array(hashes, dtype=np.uint64))
    expected = unique_pairs(u, radius, k=0).tolist()
    assert expected == [list(p) for p in _brute([int(x) for x in u], radius)]
    for k in range(1, 64 - radius):
        if len(list(itertools.combinations(range(radius + k), k))) > 2000:
            break
        assert unique_pairs(u, radius, k=k, workers=2).tolist() == expected, k
        if k <= 3:
            assert unique_pairs(u, radius, k=k, part=16).tolist() == expected, k  # tables split in parts


def test_skewed_input_long_runs_of_shared_blocks():
    """Hashes that share most bits (flat images do) make long runs of equal keys: still exact."""
    rng = np.random.default_rng(5)
    stem = 0xFFFF_0000_FFFF_0000
    hashes = [stem ^ int(x) for x in rng.integers(0, 1 << 12, 400)]  # all within 12 low bits of each other
    u = np.unique(np.array(hashes, dtype=np.uint64))
    for radius in (2, 4, 6):
        assert [tuple(p) for p in near_pairs(hashes, radius).tolist()] == _brute(hashes, radius)
        assert unique_pairs(u, radius, part=16).tolist() == unique_pairs(u, radius, k=0).tolist()


def test_plan_blocks_and_limits():
    assert sum(w for _, w in blocks(9)) == 64 and blocks(9)[0] == (0, 7)
    assert plan(1_240_000, 6) == 3 and plan(5_000_000, 6) == 4  # 84 tables of ~21-bit keys, then 210
    assert plan(100, 20) == 0  # few hashes: all-pairs is cheaper
    for radius in range(1, 21):
        k = plan(1_000_000, radius)
        assert k == 0 or len(list(itertools.combinations(range(radius + k), k))) <= MAX_TABLES


def test_groups_link_equal_digests_equal_hashes_and_near_hashes():
    phashes = np.array([0, 0b111, 0xF << 40, 0, 2**64 - 1, 2**64 - 2], dtype=np.uint64)
    digests = np.zeros((6, 32), np.uint8)
    digests[:, 0] = [1, 2, 3, 4, 3, 5]  # 2 and 4 have the same pixels, far apart in pHash
    groups = duplicate_groups(phashes, digests, radius=3, workers=2)
    assert [g.tolist() for g in groups] == [[0, 1, 3], [2, 4, 5]]
    assert [g.tolist() for g in duplicate_groups(phashes, digests, radius=0)] == [[0, 3], [2, 4]]
    digests[:, 0] = [1, 7, 3, 4, 6, 7]
    digests[5, 31] = 9  # 1 and 5 share their first 8 bytes, not their digest
    assert [g.tolist() for g in duplicate_groups(phashes, digests, radius=0)] == [[0, 3]]
    digests[5, 31] = 0
    assert [g.tolist() for g in duplicate_groups(phashes, digests, radius=0)] == [[0, 3], [1, 5]]
    assert duplicate_groups(np.array([0, 2**64 - 1], np.uint64), np.eye(2, 32, dtype=np.uint8), radius=6) == []
