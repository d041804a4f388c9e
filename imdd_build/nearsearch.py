"""Every pair of 64-bit hashes within a Hamming radius, by multi-index hashing over numpy uint64.

Pigeonhole, generalised: cut the 64 bits into m = r + k blocks; two hashes that differ in at most r
bits leave at least k blocks identical. So one table per choice of k blocks (C(r + k, k) tables)
keys every hash on those blocks; equal keys are candidates, and each candidate is checked with a
vectorised popcount of the XOR. No pair within the radius is missed, and nothing else is reported.

A table is one in-place `np.sort` of `hash(chosen bits) << 32 | index` (uint64) and a pass over
equal neighbours, run on parts of ~64k hashes split on the top bits of one of its blocks (equal keys
stay in one part, and each part's work stays in cache): about linear in the number of hashes while
the keys are wide enough for buckets to stay small. `k` comes from a cost model (tables x (hashes +
candidates expected for uniform hashes)), capped at `MAX_TABLES` tables: at radius 6, k = 3 (84
tables of ~21-bit keys) up to a few million hashes, then k = 4. Where the cap leaves keys narrow (a
large radius) the candidates grow quadratically; if a tiled all-pairs popcount is cheaper it is used
instead. At a large radius most pairs of unrelated images are within reach anyway, so the output
itself is quadratic there (64-bit hashes, radius 20: ~0.2% of all random pairs).

Identical hashes are collapsed first (`np.unique`): a run of equal hashes costs nothing per pair.
Tables run on `workers` threads (numpy's sort and ufuncs release the GIL); the result is sorted and
unique, so it does not depend on the number of workers or on the order tables finish in.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import combinations
from math import comb

import numpy as np

MAX_TABLES = 500
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier (Fibonacci hashing) to fold keys wider than the room
_LITTLE = sys.byteorder == "little"
_CHUNK = 1 << 22
_PART = 64_000  # hashes per part of a table: its sort and gathers stay in a 2 MB L2 cache
# Relative costs of the cost model, measured on a 2-core Xeon (bench/dedupe.py): one hash in one
# table (sort and passes, ~15 ns), one checked candidate (~6x: random gathers), one all-pairs
# comparison (contiguous, vectorised).
_TABLE_COST, _CANDIDATE_COST, _PAIR_COST = 1.0, 6.0, 0.1


def blocks(m: int) -> list[tuple[int, int]]:
    """m disjoint bit ranges (low bit, width) covering the 64 bits, widths as equal as possible."""
    edges = [round(i * 64 / m) for i in range(m + 1)]
    return [(edges[i], edges[i + 1] - edges[i]) for i in range(m)]


def plan(n: int, radius: int) -> int:
    """k blocks per table key for `n` distinct hashes at `radius` (0: tiled all-pairs instead)."""
    best_k, best_cost = 0, _PAIR_COST * n * n / 2
    for k in range(1, 65 - radius):
        tables = comb(radius + k, k)
        if tables > MAX_TABLES:
            break
        key_bits = 64 * k // (radius + k)
        cost = tables * (_TABLE_COST * n + _CANDIDATE_COST * n * n / 2 / 2.0 ** key_bits)
        if cost < best_cost:
            best_k, best_cost = k, cost
    return best_k


def unique_pairs(u: np.ndarray, radius: int, workers: int = 1, k: int | None = None,
                 part: int = _PART) -> np.ndarray:
    """(p, 2) int64 index pairs i < j of distinct hashes `u` (uint64) within `radius` bits, sorted.

    `k` overrides the plan (blocks per key; 0 for all-pairs) and `part` the part size, for tests:
    the answer is the same."""
    u = np.ascontiguousarray(u, dtype=np.uint64)
    n = len(u)
    if n < 2 or radius <= 0:
        return np.empty((0, 2), np.int64)
    if n >= 1 << 32:
        raise ValueError("more than 2**32 distinct hashes")
    k = plan(n, radius) if k is None else k
    if k == 0:
        found = list(_all_pairs(u, radius))
    else:
        bl = blocks(radius + k)
        by_first: dict[int, list[int]] = {}  # tables grouped by their first block
        for combo in combinations(range(radius + k), k):
            by_first.setdefault(combo[0], []).append(sum(((1 << bl[i][1]) - 1) << bl[i][0] for i in combo))
        found = []
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for first, masks in by_first.items():  # one split copy of the hashes at a time
                found += pool.map(lambda job: _partition_pairs(u, radius, *job), _partitions(u, bl[first], masks, part))
    packed = np.unique(np.concatenate(found)) if found else np.empty(0, np.uint64)
    return np.stack([(packed >> np.uint64(32)).astype(np.int64),
                     (packed & np.uint64(0xFFFFFFFF)).astype(np.int64)], axis=1)


def near_pairs(hashes, radius: int, workers: int = 1) -> np.ndarray:
    """(p, 2) int64 index pairs i < j of `hashes` within `radius` bits (equal hashes included), sorted.

    Every pair is listed, so many equal hashes make the output quadratic in their count; `dedupe`
    links equal hashes in a chain and calls `unique_pairs` on the distinct values instead."""
    h = np.asarray(hashes, dtype=np.uint64)
    u, first, inverse, counts = np.unique(h, return_index=True, return_inverse=True, return_counts=True)
    found = unique_pairs(u, radius, workers)
    single = (counts[found[:, 0]] == 1) & (counts[found[:, 1]] == 1)
    out = [first[found[single]]]
    if (counts > 1).any():  # values held by several indices: expand to every index pair
        order = np.argsort(inverse, kind="stable")
        starts = np.r_[0, np.cumsum(counts)]

        def members(v: int) -> np.ndarray:
            return order[starts[v]:starts[v + 1]]
        for v in np.flatnonzero(counts > 1):
            a, b = np.triu_indices(counts[v], 1)
            out.append(members(v)[np.stack([a, b], axis=1)])
        for v, w in found[~single]:
            a, b = np.meshgrid(members(v), members(w), indexing="ij")
            out.append(np.stack([a.ravel(), b.ravel()], axis=1))
    pairs = np.sort(np.concatenate(out).astype(np.int64).reshape(-1, 2), axis=1)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def _partitions(u: np.ndarray, block: tuple[int, int], masks: list[int], size: int) -> Iterator[tuple]:
    """Split the hashes on the top bits of `block`, which every table in `masks` keys on, so equal
    keys stay in one part: (global indices of a part, that part's hashes, the masks) per part.

    Parts of ~`size` hashes keep each table's sort and gathers in the CPU's L2 cache; one big sort
    falls out of it as n grows (2.7x per doubling from 200k to 400k hashes on a 2 MB L2)."""
    lo, width = block
    bits = min(width, math.ceil(math.log2(len(u) / size))) if len(u) > size else 0
    if not bits:
        yield np.arange(len(u)), u, masks
        return
    part = ((u >> np.uint64(lo + width - bits)) & np.uint64((1 << bits) - 1)).astype(np.uint8)
    order = np.argsort(part, kind="stable")  # a radix sort on uint8: linear
    bounds = np.searchsorted(part[order], np.arange((1 << bits) + 1))
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if stop - start > 1:
            ids = order[start:stop]
            yield ids, u[ids], masks


def _partition_pairs(u: np.ndarray, radius: int, ids: np.ndarray, part: np.ndarray, masks: list[int]) -> np.ndarray:
    """Packed global pairs of one part over its tables."""
    index = np.arange(len(part), dtype=np.uint64)
    local = [_table_pairs(part, mask, radius, index) for mask in masks]
    local = np.concatenate(local) if local else np.empty(0, np.uint64)
    if not len(local):
        return local
    a = ids[(local >> np.uint64(32)).astype(np.int64)]
    b = ids[(local & np.uint64(0xFFFFFFFF)).astype(np.int64)]
    return (np.minimum(a, b).astype(np.uint64) << np.uint64(32)) | np.maximum(a, b).astype(np.uint64)


def _table_pairs(u: np.ndarray, mask: int, radius: int, index: np.ndarray) -> np.ndarray:
    """Packed (i << 32 | j) pairs within `radius` among hashes whose bits under `mask` (the chosen
    blocks) are equal."""
    # key: a multiplicative hash of the masked bits into the high 32 bits, the index in the low 32.
    # Hash collisions only add candidates, which the popcount check removes. In place: one buffer.
    packed = np.bitwise_and(u, np.uint64(mask))
    np.multiply(packed, _MIX, out=packed)
    np.bitwise_and(packed, np.uint64(0xFFFFFFFF00000000), out=packed)
    np.bitwise_or(packed, index, out=packed)
    packed.sort()  # the O(n log n) step of a table, numpy's SIMD sort
    if _LITTLE:  # the two halves as strided views, no copies
        halves = packed.view(np.uint32)
        keys, ids = halves[1::2], halves[0::2]
    else:
        keys, ids = packed >> np.uint64(32), packed & np.uint64(0xFFFFFFFF)
    found = list(_check_runs(u, keys, ids, radius))
    return np.concatenate(found) if found else np.empty(0, np.uint64)


def _check_runs(u: np.ndarray, keys: np.ndarray, ids: np.ndarray, radius: int) -> Iterator[np.ndarray]:
    """Candidates (ids[e], ids[e + d]) with keys[e] == keys[e + d] (keys sorted), checked by popcount;
    yields packed pairs within radius.

    Step d looks only at the positions whose key still equals the one d places on, a subset of the
    step before (keys are sorted), so the total work is the number of candidates however long a run
    of equal keys is."""
    active = np.flatnonzero(keys[1:] == keys[:-1])
    d = 1
    while len(active):
        for start in range(0, len(active), _CHUNK):
            e = active[start:start + _CHUNK]
            a, b = ids[e].astype(np.int64), ids[e + d].astype(np.int64)
            close = np.bitwise_count(u[a] ^ u[b]) <= radius
            if close.any():
                a, b = a[close], b[close]
                lo, hi = np.minimum(a, b).astype(np.uint64), np.maximum(a, b).astype(np.uint64)
                yield (lo << np.uint64(32)) | hi
        d += 1
        active = active[active + d < len(keys)]
        active = active[keys[active] == keys[active + d]]


def _all_pairs(u: np.ndarray, radius: int) -> Iterator[np.ndarray]:
    """Tiled brute force over distinct hashes: packed pairs i < j within radius."""
    n = len(u)
    rows = max(1, _CHUNK // n)
    for start in range(0, n - 1, rows):
        stop = min(n - 1, start + rows)
        block = np.bitwise_count(u[start:stop, None] ^ u[None, start + 1:]) <= radius
        i, j = np.nonzero(block)
        i = i + start
        j = j + start + 1
        keep = j > i
        if keep.any():
            yield (i[keep].astype(np.uint64) << np.uint64(32)) | j[keep].astype(np.uint64)
