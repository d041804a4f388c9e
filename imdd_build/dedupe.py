"""Exact and near duplicates across sources, and train/test leakage.

* exact: sha256 of the normalized pixels (the stored 512x512 image decoded to RGB), so the same
  picture stored once as PNG and once as JPEG-q95 from a PNG is *not* exact, but the same pixels
  under two sources or two keys are;
* near: a 64-bit DCT perceptual hash (32x32 grey thumbnail, 8x8 lowest frequencies against their
  median) within `radius` bits of Hamming distance. Candidates come from bucketing the hash into
  `radius + 1` bands (two hashes within `radius` bits agree exactly on at least one band), so the
  work is about linear in the number of images, not quadratic;
* leakage: a group with a train member and a validation/test member. By default the evaluation
  copies are kept and the train copies are dropped from what gets published.

Hashes are cached in the catalog (`image_hashes`, keyed by the stored image reference), so a
second run decodes nothing new.
"""

from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .catalog import Catalog
from .record import Record
from .store import Store

DEFAULT_RADIUS = 6
MAX_RADIUS = 20
EVAL_SPLITS = ("validation", "test")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS image_hashes (
    image TEXT PRIMARY KEY,      -- store reference of the normalized image
    pixel_sha256 TEXT NOT NULL,  -- sha256 of the decoded RGB pixels
    phash TEXT NOT NULL          -- 64-bit DCT perceptual hash, 16 hex digits
);
"""


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


@dataclass
class Member:
    key: str
    source: str
    split: str
    label: str
    pixel_sha256: str
    phash: int


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
                "members": [{"key": m.key, "source": m.source, "split": m.split, "label": m.label,
                             "phash": f"{m.phash:016x}"} for m in self.members],
                "dropped": self.dropped}


@dataclass
class DedupeResult:
    radius: int
    images: int
    groups: list[DuplicateGroup]
    leakage_policy: str

    @property
    def dropped(self) -> set[str]:
        return {k for g in self.groups for k in g.dropped}

    def summary(self) -> dict:
        leaks = [g for g in self.groups if g.leakage]
        return {"radius": self.radius, "images": self.images, "group_count": len(self.groups),
                "exact_groups": sum(g.kind == "exact" for g in self.groups),
                "near_groups": sum(g.kind == "near" for g in self.groups),
                "duplicate_images": sum(len(g.members) - 1 for g in self.groups),
                "leakage_groups": len(leaks), "leakage_policy": self.leakage_policy,
                "dropped": sorted(self.dropped)}


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _bands(radius: int) -> list[tuple[int, int]]:
    """radius + 1 disjoint bit ranges covering the 64 bits (pigeonhole: a match within `radius`
    differing bits leaves at least one band identical)."""
    n = radius + 1
    edges = [round(i * 64 / n) for i in range(n + 1)]
    return [(edges[i], edges[i + 1]) for i in range(n)]


def near_pairs(hashes: list[int], radius: int) -> Iterable[tuple[int, int]]:
    """Index pairs whose hashes are within `radius` bits, found through band buckets."""
    seen: set[tuple[int, int]] = set()
    for lo, hi in _bands(radius):
        mask = (1 << (hi - lo)) - 1
        buckets: dict[int, list[int]] = defaultdict(list)
        for i, h in enumerate(hashes):
            buckets[(h >> lo) & mask].append(i)
        for bucket in buckets.values():
            for x in range(len(bucket)):
                for y in range(x + 1, len(bucket)):
                    pair = (bucket[x], bucket[y])
                    if pair not in seen and hamming(hashes[pair[0]], hashes[pair[1]]) <= radius:
                        seen.add(pair)
                        yield pair


def image_hashes(catalog: Catalog, store: Store, records: list[Record],
                 on_record: Callable[[Record], None] | None = None) -> dict[str, tuple[str, int]]:
    """image ref -> (pixel sha256, pHash), from the cache or by decoding (and caching) the image."""
    catalog.db.executescript(_SCHEMA)
    cached = {ref: (sha, int(ph, 16)) for ref, sha, ph in
              catalog.db.execute("SELECT image, pixel_sha256, phash FROM image_hashes")}
    new = []
    for record in records:
        if record.image not in cached:
            cached[record.image] = pixel_hashes(store.read(record.image))
            new.append((record.image, cached[record.image][0], f"{cached[record.image][1]:016x}"))
            if len(new) >= 500:
                _save(catalog, new)
        if on_record:
            on_record(record)
    _save(catalog, new)
    return cached


def _save(catalog: Catalog, rows: list[tuple[str, str, str]]) -> None:
    if rows:
        with catalog._transaction():
            catalog.db.executemany("INSERT OR REPLACE INTO image_hashes VALUES (?, ?, ?)", rows)
        rows.clear()


def find_duplicates(catalog: Catalog, store: Store, radius: int = DEFAULT_RADIUS,
                    sources: Iterable[str] = (), leakage: str = "drop-train",
                    on_total: Callable[[int], None] | None = None,
                    on_record: Callable[[Record], None] | None = None) -> DedupeResult:
    """Group exact and near duplicates over the catalog (or `sources`); flag and resolve leakage.

    `leakage`: "drop-train" (default: keep the validation/test copies, drop the train copies from the
    published splits) or "keep" (report only).
    """
    if not 0 <= radius <= MAX_RADIUS:
        raise ValueError(f"--radius must be between 0 and {MAX_RADIUS} bits, not {radius}")
    if leakage not in ("drop-train", "keep"):
        raise ValueError(f"invalid leakage policy {leakage!r} (drop-train or keep)")
    wanted = set(sources)
    records = [r for r in catalog.iter_records() if not wanted or r.source in wanted]
    records = [r for r in records if r.caption_status != "rejected"]
    if on_total:
        on_total(len(records))
    hashes = image_hashes(catalog, store, records, on_record)
    members = [Member(r.key, r.source, r.split, r.label, *hashes[r.image]) for r in records]
    uf = _UnionFind(len(members))
    by_pixels: dict[str, int] = {}
    for i, m in enumerate(members):  # exact first: no radius needed
        if m.pixel_sha256 in by_pixels:
            uf.union(by_pixels[m.pixel_sha256], i)
        else:
            by_pixels[m.pixel_sha256] = i
    for a, b in near_pairs([m.phash for m in members], radius):
        uf.union(a, b)
    clusters: dict[int, list[Member]] = defaultdict(list)
    for i, m in enumerate(members):
        clusters[uf.find(i)].append(m)
    groups = []
    for root in sorted(clusters, key=lambda r: members[r].key):
        group = clusters[root]
        if len(group) < 2:
            continue
        kind = "exact" if len({m.pixel_sha256 for m in group}) == 1 else "near"
        g = DuplicateGroup(len(groups) + 1, kind, sorted(group, key=lambda m: m.key))
        splits = {m.split for m in group}
        g.leakage = "train" in splits and bool(splits & set(EVAL_SPLITS))
        if g.leakage and leakage == "drop-train":
            g.dropped = [m.key for m in g.members if m.split == "train"]
        groups.append(g)
    return DedupeResult(radius, len(members), groups, leakage)


def save_groups(catalog: Catalog, result: DedupeResult) -> None:
    """Record the last dedupe run in the catalog (`dedupe_groups`), replacing the previous one."""
    catalog.db.executescript("""
CREATE TABLE IF NOT EXISTS dedupe_groups (
    group_id INTEGER NOT NULL, key TEXT NOT NULL, kind TEXT NOT NULL, radius INTEGER NOT NULL,
    leakage INTEGER NOT NULL, dropped INTEGER NOT NULL, PRIMARY KEY (group_id, key));
""")
    with catalog._transaction():
        catalog.db.execute("DELETE FROM dedupe_groups")
        catalog.db.executemany("INSERT INTO dedupe_groups VALUES (?, ?, ?, ?, ?, ?)",
                               [(g.id, m.key, g.kind, result.radius, int(g.leakage), int(m.key in g.dropped))
                                for g in result.groups for m in g.members])
