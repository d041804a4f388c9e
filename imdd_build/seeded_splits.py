"""Seeded splits per near-duplicate group: the split of records whose source has no official split
(`split_origin: seeded`) is decided per group by the dedupe step (`dedupe.find_duplicates`), so the
same object photographed several times never spans splits and nothing of it needs dropping.

See `SEEDED_SPLIT_RULE`; `draw_group_splits` is the draw. Pure functions over the dedupe's groups
(anything with `members` of `key`, `source`, `split`, `sample_split`, `origin`); the catalog is
written by `dedupe.save_groups`.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass

from .record import SPLITS
from .registry import get_source
from .sourcekit.base import DEFAULT_SEEDED_SPLIT

SEEDED_SPLIT_MODES = ("group", "sample")
SEEDED_SPLIT_RULE = ("Records of sources without an official split (split_origin seeded) are split per near-duplicate "
                     "group: every group of them lands in one split, drawn deterministically from the group (its "
                     "smallest key's seeded hash orders the groups of a source, which fill the source's seeded "
                     "fractions), so no such group is leakage and nothing is dropped; a record that moves says "
                     "split_origin seeded-group and keeps its own draw in sample_split. Official splits are "
                     "never changed. sample keeps the per-image draw (and the leakage rule drops).")
SPLIT_SEED = "imdd-v1"  # the salt of the group order (the same as the sources' own seeded draw)
SEEDED_ORIGINS = ("seeded", "seeded-group")


@dataclass
class SplitMove:
    """A seeded record put in its near-duplicate group's split (not its own draw)."""

    key: str
    source: str
    sample_split: str
    split: str
    group_key: str


def seeded_fractions(source: str) -> dict[str, float]:
    """The seeded split fractions of `source`: its registry entry's `seeded_split`, else 70/10/20."""
    try:
        fractions = get_source(source).seeded_split
    except (KeyError, FileNotFoundError):
        fractions = {}
    fractions = fractions or DEFAULT_SEEDED_SPLIT
    total = sum(fractions.values())
    return {s: f / total for s, f in fractions.items()}


def group_order(source: str, group_key: str) -> str:
    """Where a group of `source` whose smallest seeded key is `group_key` sits in its source's draw."""
    return hashlib.sha256(f"{SPLIT_SEED}\0{source}\0{group_key}".encode()).hexdigest()


def draw_group_splits(parts: list[tuple[str, str, int]], free: dict[str, Counter],
                      fractions: dict[str, dict[str, float]]) -> list[str]:
    """The split of each part (owner source, group key, size), in order.

    Per source, its parts are laid end to end in `group_order` and the line is cut at the source's
    fractions, corrected for the records that are in no part (`free[source]`: split -> records, they
    keep their own draw): a part takes the split its middle falls in. So the source's fractions are
    met to within about one part at each cut, a part's split depends only on the catalog, and a new
    record moves only the parts near a cut."""
    out = [""] * len(parts)
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, (source, _, _) in enumerate(parts):
        by_source[source].append(i)
    for source, index in by_source.items():
        f = fractions[source]
        size = sum(parts[i][2] for i in index)
        total = size + sum(free[source].values())
        need = {s: max(0.0, f[s] * total - free[source][s]) for s in f}
        if sum(need.values()) <= 0:
            need = dict(f)
        cuts, acc = [], 0.0
        for s, v in need.items():
            acc += v / sum(need.values())
            cuts.append((acc, s))
        pos = 0
        for i in sorted(index, key=lambda i: (group_order(source, parts[i][1]), parts[i][1])):
            middle = (pos + parts[i][2] / 2) / size
            out[i] = next((s for cut, s in cuts if middle < cut), cuts[-1][1])
            pos += parts[i][2]
    return out


def regroup(groups: list, counts: dict[str, Counter]) -> list[SplitMove]:
    """Put the seeded members of each group (2+) in one split (`draw_group_splits`); returns the moves."""
    fractions: dict[str, dict[str, float]] = {}

    def target(source: str) -> dict[str, float]:
        if source not in fractions:
            fractions[source] = seeded_fractions(source)
        return fractions[source]

    parts, part_members = [], []
    for g in groups:
        members = [m for m in g.members if m.origin == "seeded" and m.sample_split in target(m.source)]
        if len(members) >= 2:
            first = min(members, key=lambda m: m.key)
            parts.append((first.source, first.key, len(members)))
            part_members.append(members)
    free = {source: Counter({s: c[("seeded", s)] for s in target(source)}) for source, c in counts.items()
            if any(origin == "seeded" for origin, _ in c)}
    for members in part_members:
        for m in members:
            free[m.source][m.sample_split] -= 1
    moves = []
    for (owner, group_key, _), members, split in zip(parts, part_members, draw_group_splits(parts, free, fractions)):
        for m in members:
            m.split = split
            if split != m.sample_split:
                m.origin = "seeded-group"
                moves.append(SplitMove(m.key, m.source, m.sample_split, split, group_key))
    return sorted(moves, key=lambda m: m.key)


def splits_by_source(counts: dict[str, Counter], result) -> dict[str, dict]:
    """Per source, what `DedupeResult.summary()` reports as `splits_by_source` (`counts`: source ->
    (origin, split before regrouping) -> records; `result`: the moves, changes and dropped copies)."""
    published: dict[str, Counter] = {source: Counter() for source in counts}
    for source, c in counts.items():
        for (_, split), k in c.items():
            published[source][split] += k
    moved, dropped = Counter(), Counter()
    for m in result.moves:
        published[m.source][m.sample_split] -= 1
        published[m.source][m.split] += 1
        moved[m.source] += 1
    drops = result.dropped
    for g in result.groups:
        for m in g.members:
            if m.key in drops:
                published[m.source][m.split] -= 1
                dropped[m.source] += 1
    out = {}
    for source in sorted(counts):
        origins = {origin for origin, _ in counts[source]}
        splits = {s: published[source][s] for s in SPLITS if published[source][s]}
        kept = sum(splits.values())
        entry = {"origin": origins.pop() if len(origins) == 1 else "mixed",
                 "records": sum(counts[source].values()), "moved": moved[source],
                 "changed_since_last_run": result.changed.get(source, 0), "dropped": dropped[source],
                 "splits": splits, "fractions": {s: round(v / kept, 4) for s, v in splits.items()} if kept else {}}
        if "seeded" in {origin for origin, _ in counts[source]}:
            entry["target"] = {s: round(f, 4) for s, f in seeded_fractions(source).items()}
        out[source] = entry
    return out


def split_message(result) -> str:
    """One line for stderr on the seeded regrouping (empty when nothing moved or changed)."""
    changed = sum(result.changed.values())
    if not result.moves and not changed:
        return ""
    per = ", ".join(f"{s} {v['moved']}" for s, v in result.splits_by_source.items() if v["moved"])
    return (f"seeded splits: {len(result.moves)} record(s) in their near-duplicate group's split instead of their "
            f"own draw ({per or 'none'}); {changed} changed split since the last run (--seeded-splits sample "
            "keeps the per-image draw)")
