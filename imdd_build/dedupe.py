"""Exact and near duplicates across sources, and leakage between splits.

* exact: sha256 of the normalized pixels (the stored 512x512 image decoded to RGB), so the same
  picture stored once as PNG and once as JPEG-q95 from a PNG is *not* exact, but the same pixels
  under two sources or two keys are;
* near: a 64-bit DCT perceptual hash (32x32 grey thumbnail, 8x8 lowest frequencies against their
  median) within `radius` bits of Hamming distance, found by multi-index hashing over numpy uint64
  (`nearsearch`): about n log n at the default radius (`bench/dedupe.py`: 100k/200k/400k hashes), exact
  (equal to brute force), the same groups at any worker count;
* seeded splits: see `seeded_splits.SEEDED_SPLIT_RULE`. Records of sources without an official split are
  regrouped before the leakage rule, so a group of them never spans splits (nothing to drop);
* leakage: see `LEAKAGE_RULE`. `dedupe`, `shard` and `push-to-hub` apply the same rules, and
  `save_groups` writes the regrouped splits to the records (the one place a split is decided after
  ingest), so local shards, Hub configs and the card agree.

The catalog is read as a stream of the few fields needed (`Catalog.iter_fields`), never as records:
one pass keeps ~42 bytes per image (pHash, pixel digest, split, whether it is seeded) in numpy
arrays and a count per (source, split), a second pass picks up the keys of the few images that are
in a group, so memory stays flat in the record count.
Hashes are cached in the catalog (`image_hashes`, keyed by the stored image reference), so a
second run decodes nothing new; new images are decoded on `workers` processes.
"""

from __future__ import annotations

import hashlib
import io
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from .catalog import Catalog
from .executor import chunked
from .nearsearch import unique_pairs
from .record import SPLITS
from .seeded_splits import SEEDED_ORIGINS, SEEDED_SPLIT_MODES, SplitMove, regroup, splits_by_source
from .store import Store
from .errors import RunError

DEFAULT_RADIUS = 6
MAX_RADIUS = 20
EVAL_SPLITS = ("validation", "test")
HELD_OUT_ORDER = ("test", "validation")  # which evaluation copy is kept: the most held-out one first
LEAKAGE_POLICIES = ("drop-train", "keep")
LEAKAGE_RULE = ("A duplicate group whose members span an evaluation split (validation or test) and any other "
                "split is leakage. drop-train keeps the copies in the group's most held-out split (test, else "
                "validation) and leaves the others out (train, unlabeled, and validation when test holds the "
                "image); keep only reports it.")

_PAGE = 5000  # rows per page of the catalog stream (and per batch of cache lookups)


def pixel_hashes(data: bytes) -> tuple[str, int]:
    """(sha256 of the RGB pixels, 64-bit pHash) of one stored image."""
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
    exact = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode() + rgb.tobytes()).hexdigest()
    return exact, phash(rgb)


def phash(im: Image.Image) -> int:
    """DCT perceptual hash: 32x32 grey box-filtered thumbnail, 8x8 low frequencies > their median."""
    from scipy.fft import dctn

    grey = np.asarray(im.convert("L").resize((32, 32), Image.BOX), dtype=np.float64)
    low = dctn(grey, type=2, norm="ortho")[:8, :8].ravel()
    bits = low > np.median(low[1:])  # the DC term is left out of the median: it is just brightness
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def leakage_drops(splits: Iterable[str], policy: str) -> tuple[bool, set[str]]:
    """(is this group leakage, the splits whose copies are dropped) for a group's member splits."""
    present = set(splits)
    leak = bool(present & set(EVAL_SPLITS)) and len(present) > 1
    if not leak or policy == "keep":
        return leak, set()
    kept = next(s for s in HELD_OUT_ORDER if s in present)
    return True, present - {kept}


@dataclass
class Member:
    key: str
    source: str
    split: str  # the split it is published in (after seeded regrouping)
    label: str
    pixel_sha256: str
    phash: int
    sample_split: str = ""  # its split before regrouping: the official one, or its own seeded draw
    origin: str = "official"  # official | seeded | seeded-group (moved into its group's split)

    def as_dict(self) -> dict:
        out = {"key": self.key, "source": self.source, "split": self.split, "label": self.label,
               "phash": f"{self.phash:016x}"}
        if self.origin != "official":
            out["split_origin"] = self.origin
        if self.origin == "seeded-group":
            out["sample_split"] = self.sample_split
        return out


@dataclass
class DuplicateGroup:
    id: int
    kind: str  # "exact": every member has the same pixels; "near": within the radius
    members: list[Member]
    leakage: bool = False
    dropped: list[str] = field(default_factory=list)  # keys left out of the published splits

    def as_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "leakage": self.leakage, "size": len(self.members),
                "sources": sorted({m.source for m in self.members}),
                "splits": sorted({m.split for m in self.members}),
                "members": [m.as_dict() for m in self.members],
                "dropped": self.dropped}


@dataclass
class DedupeResult:
    radius: int
    images: int
    groups: list[DuplicateGroup]
    leakage_policy: str
    seeded_splits: str = "group"
    sources: list[str] = field(default_factory=list)  # the scope of the run (empty: every source)
    moves: list[SplitMove] = field(default_factory=list)  # seeded records in their group's split
    restore: list[str] = field(default_factory=list)  # keys moved before, back to their own draw now
    changed: dict[str, int] = field(default_factory=dict)  # source -> records whose split changed since last run
    splits_by_source: dict[str, dict] = field(default_factory=dict)  # see `summary`

    @property
    def dropped(self) -> set[str]:
        return {k for g in self.groups for k in g.dropped}

    def summary(self) -> dict:
        """The run's figures. `splits_by_source[source]`: `origin` (official, seeded or mixed),
        `records` (not rejected), `moved` (seeded records in their group's split, not their own draw),
        `changed_since_last_run`, `dropped` (leakage), `splits` (published counts: records - dropped),
        `fractions` (of the published records) and, for seeded records, `target` (the source's
        seeded fractions)."""
        leaks = [g for g in self.groups if g.leakage]
        return {"radius": self.radius, "images": self.images, "group_count": len(self.groups),
                "exact_groups": sum(g.kind == "exact" for g in self.groups),
                "near_groups": sum(g.kind == "near" for g in self.groups),
                "duplicate_images": sum(len(g.members) - 1 for g in self.groups),
                "leakage_groups": len(leaks), "leakage_policy": self.leakage_policy,
                "dropped": sorted(self.dropped),
                "seeded_splits": self.seeded_splits,
                "split_moves": len(self.moves),
                "split_changes_since_last_run": sum(self.changed.values()),
                "splits_by_source": self.splits_by_source}


# -- hashes: cache in the catalog, decode what is missing -----------------------------------------
def _hash_stored(store_root: Path, ref: str) -> tuple[str, int]:
    return pixel_hashes(Store(store_root).read(ref))


class _Hasher:
    """Image ref -> (pixel sha256, pHash): from the `image_hashes` cache, or decoded (on `workers`
    processes, started only when something is missing) and cached."""

    def __init__(self, catalog: Catalog, store: Store, workers: int):
        self.catalog, self.store, self.workers = catalog, store, workers
        self.pool: ProcessPoolExecutor | None = None

    def lookup(self, refs: list[str]) -> list[tuple[str, int]]:
        unique = list(dict.fromkeys(refs))
        found = self.catalog.dedupe.hashes(unique)
        missing = [ref for ref in unique if ref not in found]
        if missing:
            fn = partial(_hash_stored, self.store.root)
            if self.workers > 1 and len(missing) > 1:
                self.pool = self.pool or ProcessPoolExecutor(self.workers)
                computed = list(self.pool.map(fn, missing, chunksize=16))
            else:
                computed = [fn(ref) for ref in missing]
            found.update(zip(missing, computed))
            self.catalog.dedupe.put_hashes(zip(missing, computed))
        return [found[ref] for ref in refs]

    def close(self) -> None:
        if self.pool:
            self.pool.shutdown()


def _rows(catalog: Catalog, sources: Iterable[str], fields: tuple[str, ...]) -> Iterator[tuple]:
    """The dedupe's view of the catalog: `fields` (after `caption_status`) of every record that is
    not rejected, in key order."""
    for row in catalog.iter_fields(("caption_status", *fields), sources, batch=_PAGE):
        if row[0] != "rejected":
            yield row[1:]


def _count(catalog: Catalog, sources: Iterable[str]) -> int:
    wanted = set(sources)
    return sum(n for k, n in catalog.counts_by("source", "caption_status").items()
               if (not wanted or k.rsplit("/", 1)[0] in wanted) and not k.endswith("/rejected"))


# -- groups ---------------------------------------------------------------------------------------
def duplicate_groups(phashes: np.ndarray, digests: np.ndarray, radius: int, workers: int = 1) -> list[np.ndarray]:
    """Connected groups (2+ members) of images linked by equal pixel digests ((n, 32) uint8) or
    pHashes within `radius`: sorted index arrays, ordered by their first index."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(phashes)
    edges = [_equal_digests(digests)]
    order = np.argsort(phashes, kind="stable")
    ordered = phashes[order]
    same = ordered[1:] == ordered[:-1]
    edges.append(np.stack([order[:-1][same], order[1:][same]], axis=1))  # equal pHashes: a chain
    first = order[np.r_[True, ~same]]  # one image per distinct pHash, in pHash order
    edges.append(first[unique_pairs(ordered[np.r_[True, ~same]], radius, workers)])  # within the radius
    a, b = np.concatenate(edges).T
    _, labels = connected_components(coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n)), directed=False)
    grouped = np.flatnonzero(np.bincount(labels)[labels] >= 2)
    if not len(grouped):
        return []
    grouped = grouped[np.argsort(labels[grouped], kind="stable")]  # by label, indices ascending
    bounds = np.flatnonzero(np.r_[True, labels[grouped][1:] != labels[grouped][:-1], True])
    return sorted((grouped[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)), key=lambda g: int(g[0]))


def _equal_digests(digests: np.ndarray) -> np.ndarray:
    """(p, 2) index pairs chaining the images with equal digests: sorted on their first 8 bytes,
    then the few images that share those fully compared."""
    words = np.ascontiguousarray(digests).view(np.uint64).reshape(len(digests), -1)
    order = np.argsort(words[:, 0], kind="stable")
    head = words[order, 0]
    same = head[1:] == head[:-1]
    if not same.any():
        return np.empty((0, 2), np.int64)
    shared = order[np.r_[same, False] | np.r_[False, same]]
    shared = shared[np.lexsort(words[shared].T[::-1])]
    equal = np.all(words[shared][1:] == words[shared][:-1], axis=1)
    return np.stack([shared[:-1][equal], shared[1:][equal]], axis=1)


def find_duplicates(catalog: Catalog, store: Store, radius: int = DEFAULT_RADIUS,
                    sources: Iterable[str] = (), leakage: str = "drop-train", workers: int = 1,
                    on_total: Callable[[int], None] | None = None,
                    on_record: Callable[..., None] | None = None,
                    seeded_splits: str = "group") -> DedupeResult:
    """Group exact and near duplicates over the catalog (or `sources`); regroup seeded splits
    (`seeded_splits`: "group" or "sample", see `SEEDED_SPLIT_RULE`); flag and resolve leakage
    (`leakage`: "drop-train" or "keep", see `LEAKAGE_RULE`). Records with a rejected caption are
    left out. `on_record()` is called once per image hashed or read from the cache. Nothing is
    written but the hash cache: `save_groups` records the result (groups and splits)."""
    if not 0 <= radius <= MAX_RADIUS:
        raise RunError(f"--radius must be between 0 and {MAX_RADIUS} bits, not {radius}")
    if leakage not in LEAKAGE_POLICIES:
        raise RunError(f"invalid leakage policy {leakage!r} (drop-train or keep)")
    if seeded_splits not in SEEDED_SPLIT_MODES:
        raise RunError(f"invalid --seeded-splits {seeded_splits!r} (group or sample)")
    sources = sorted(set(sources))
    if on_total:
        on_total(_count(catalog, sources))
    phashes, digests, splits, seeded = array("Q"), bytearray(), array("B"), array("B")
    counts: dict[str, Counter] = defaultdict(Counter)  # source -> (origin, split before regrouping) -> records
    hasher = _Hasher(catalog, store, max(1, workers))
    try:
        for page in chunked(_rows(catalog, sources, _PASS_FIELDS), _PAGE):
            for row, (sha, ph) in zip(page, hasher.lookup([row[-1] for row in page])):
                source, split, is_seeded = _origin(row)
                phashes.append(ph)
                digests += bytes.fromhex(sha)
                splits.append(SPLITS.index(split))
                seeded.append(is_seeded)
                counts[source][("seeded" if is_seeded else "official", split)] += 1
                if on_record:
                    on_record(None)
    finally:
        hasher.close()
    n = len(phashes)
    hashes = np.frombuffer(phashes, np.uint64) if n else np.empty(0, np.uint64)
    pixel = np.frombuffer(bytes(digests), np.uint8).reshape(n, 32)
    groups = duplicate_groups(hashes, pixel, radius, workers) if n else []
    members, regrouped = _members(catalog, sources, groups, np.frombuffer(splits, np.uint8) if n else None, n)
    result = DedupeResult(radius, n, [], leakage, seeded_splits, sources)
    for index in groups:
        group = [Member(*members[int(i)], pixel[i].tobytes().hex(), int(hashes[i]), members[int(i)][2],
                        "seeded" if seeded[i] else "official") for i in index]
        kind = "exact" if len({m.pixel_sha256 for m in group}) == 1 else "near"
        result.groups.append(DuplicateGroup(len(result.groups) + 1, kind, group))
    if seeded_splits == "group":
        result.moves = regroup(result.groups, counts)
    for g in result.groups:
        g.leakage, dropped_splits = leakage_drops((m.split for m in g.members), leakage)
        g.dropped = [m.key for m in g.members if m.split in dropped_splits]
    previous = catalog.dedupe.split_moves(sources)
    moved = {m.key for m in result.moves}
    result.restore = sorted((set(previous) | regrouped) - moved)
    result.changed = _changed(catalog, previous, result.moves, result.restore)
    result.splits_by_source = splits_by_source(counts, result)
    return result


_PASS_FIELDS = ("source", "split", "split_origin", "sample_split", "image")


def _origin(row: tuple) -> tuple[str, str, bool]:
    """(source, split before regrouping, whether it is seeded) of a row of `_PASS_FIELDS` (or more)."""
    source, split, origin, sample = row[:4]
    return source, (sample if origin == "seeded-group" and sample else split), origin in SEEDED_ORIGINS


def _members(catalog: Catalog, sources: list[str], groups: list[np.ndarray], splits: np.ndarray | None,
             n: int) -> tuple[dict[int, tuple[str, str, str, str]], set[str]]:
    """Second pass: (key, source, split before regrouping, label) of the images that are in a group,
    by index; and the keys of every record a previous run regrouped (`split_origin: seeded-group`)."""
    wanted = np.zeros(n, bool)
    for index in groups:
        wanted[index] = True
    found: dict[int, tuple[str, str, str, str]] = {}
    regrouped: set[str] = set()
    i = -1
    for i, (key, *row, label) in enumerate(_rows(catalog, sources, ("key", *_PASS_FIELDS[:4], "label"))):
        source, split, _ = _origin(row)
        if i >= n or SPLITS.index(split) != splits[i]:
            break
        if wanted[i]:
            found[i] = (key, source, split, label)
        if row[2] == "seeded-group":
            regrouped.add(key)
    if i + 1 != n:
        raise RunError("the catalog changed while dedupe read it (another command writing?); run it again")
    return found, regrouped


def _changed(catalog: Catalog, previous: dict[str, tuple[str, str, str, str]], moves: list[SplitMove],
             restore: list[str]) -> dict[str, int]:
    """Source -> records whose split differs from the one the last run gave them."""
    changed: Counter = Counter()
    for m in moves:
        if m.key not in previous or previous[m.key][2] != m.split:
            changed[m.source] += 1
    for key in restore:
        if key in previous and catalog.get(key) is not None:  # moved last time, back to its own draw now
            changed[previous[key][0]] += 1
    return dict(sorted(changed.items()))


def save_groups(catalog: Catalog, result: DedupeResult) -> None:
    """Record the run in the catalog, replacing the previous one: the groups (`dedupe_groups`), the
    seeded records' splits (on the records, and the moves in `split_moves`)."""
    catalog.dedupe.replace_groups([(g.id, m.key, g.kind, result.radius, int(g.leakage), int(m.key in g.dropped))
                                   for g in result.groups for m in g.members])
    with catalog.transaction():
        catalog.restore_sample_splits(result.restore)
        catalog.set_splits({m.key: (m.split, "seeded-group", m.sample_split) for m in result.moves})
        catalog.dedupe.replace_split_moves(result.sources, [(m.key, m.source, m.sample_split, m.split, m.group_key)
                                                            for m in result.moves])
