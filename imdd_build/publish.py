"""Build the Hub repository folder: license policy -> dedupe/leakage -> Parquet per source ->
figures -> dataset card. `push-to-hub --dry-run DIR` stops here; a real push uploads this folder.

Layout (one copy of the data, many configs):

    README.md                                   the card (YAML configs + dataset_info)
    data/<source>/<split>-{i:05d}-of-{n:05d}.parquet
    webdataset/<source>/<split>-{i:06d}.tar      with --with-webdataset
    assets/*.png                                the stats figures and sample grids
    metadata/dedupe.json                        every duplicate group, leakage and dropped keys
    manifest.json                               every shard with sha256 and counts

Memory stays flat in the number of records: dedupe and stats read the catalog as streams of a few
fields (`Catalog.iter_fields`), the shard plan keeps a key and a size per record, and shard workers
buffer at most one row group (`bench/dedupe.py --publish-memory`).
"""

from __future__ import annotations

import json
import re
import shutil
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .card import CardInput, ConfigInfo, render_card
from .catalog import Catalog
from .dedupe import DEFAULT_RADIUS, MAX_RADIUS, SEEDED_SPLIT_MODES, find_duplicates, save_groups
from .errors import RunError, need_extra
from .license_policy import Policy, check_policy, unregistered_entry
from .record import SPLITS, Record
from .registry import load_registry
from .shard import ShardOptions, parse_size, write_shards
from .stats import collect_stats, draw_figures, public_stats, stats_rows
from .store import Store

PUBLISH_SHARD_BYTES = 450_000_000  # planned from stored bytes; keeps every file under the Hub's 500 MB


@dataclass
class PublishOptions:
    repo_id: str
    sources: tuple[str, ...] = ()
    private: bool = False
    allow_noncommercial: bool = False
    with_webdataset: bool = False
    radius: int = DEFAULT_RADIUS
    leakage: str = "drop-train"
    seeded_splits: str = "group"  # group | sample (dedupe.SEEDED_SPLIT_RULE)
    max_shard_bytes: int = PUBLISH_SHARD_BYTES
    workers: int = 1  # shard-writing processes (same bytes whatever N)


REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
REPO_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_push(repo_id: str, leakage: str, radius: int, max_shard_size: str,
               upload: bool, seeded_splits: str = "group") -> tuple[str, str | None, int]:
    """`push-to-hub`'s checks before any work: (full repo id, token, Parquet shard bytes). A bare repo name
    goes under the token's user; the token is resolved before hours of sharding, not after."""
    if not (REPO_ID_RE.match(repo_id) or REPO_NAME_RE.match(repo_id)):
        raise RunError(f"invalid repo id {repo_id!r}: expected <user-or-org>/<name> or <name>")
    if leakage not in ("drop-train", "keep"):
        raise RunError(f"invalid --leakage {leakage!r} (drop-train or keep)")
    if seeded_splits not in SEEDED_SPLIT_MODES:
        raise RunError(f"invalid --seeded-splits {seeded_splits!r} (group or sample)")
    if not 0 <= radius <= MAX_RADIUS:
        raise RunError(f"--radius must be between 0 and {MAX_RADIUS} bits, not {radius}")
    shard_bytes = parse_size(max_shard_size)
    if shard_bytes > 500_000_000:
        raise RunError("--max-shard-size must stay under 500MB (the Hub's Parquet guidance)")
    need_extra("matplotlib")
    token = None
    if upload:
        need_extra("huggingface_hub")
        from .hub import resolve_token, user_namespace

        token = resolve_token()
        if "/" not in repo_id:
            repo_id = f"{user_namespace(token)}/{repo_id}"
    return repo_id, token, shard_bytes


def check_folder(out: Path) -> None:
    if out.exists() and any(out.iterdir()) and not (out / "manifest.json").exists():
        raise RunError(f"{out}: not empty and not a folder imdd-build wrote; choose an empty or new folder")


def select_sources(catalog: Catalog, wanted: tuple[str, ...]) -> list[str]:
    present = list(catalog.counts_by("source"))
    missing = [s for s in wanted if s not in present]
    if missing:
        raise RunError(f"--sources: {', '.join(missing)} not in the catalog (present: {', '.join(present) or 'none'})")
    chosen = list(wanted) or present
    if not chosen:
        raise RunError("the catalog is empty: ingest something first")
    if "default" in chosen:
        raise RunError("a source named 'default' would clash with the default config")
    return sorted(chosen)


def resolve_policy(catalog: Catalog, options: PublishOptions) -> tuple[list[str], dict, Policy]:
    """(sources, their registry entries, the license policy); PolicyError (a ValueError) on refusal."""
    sources = select_sources(catalog, options.sources)
    registry = load_registry()
    entries = {}
    for s in sources:
        if s in registry:
            entries[s] = registry[s]
        else:
            first = next(catalog.iter_records(source=s, batch=1))
            entries[s] = unregistered_entry(s, first.license)
    policy = check_policy(entries, private=options.private, allow_noncommercial=options.allow_noncommercial)
    return sources, entries, policy


def build_repo(catalog: Catalog, store: Store, out: Path, options: PublishOptions,
               on_stage: Callable[[str], None] | None = None,
               on_total: Callable[[int], None] | None = None,
               on_record: Callable[[Record], None] | None = None) -> dict:
    """Write the exact folder that would be uploaded; return a summary (and the policy)."""
    stage = on_stage or (lambda name: None)
    out = Path(out)
    check_folder(out)
    sources, entries, policy = resolve_policy(catalog, options)

    stage("dedupe")
    dedupe = find_duplicates(catalog, store, radius=options.radius, sources=sources, leakage=options.leakage,
                             workers=options.workers, seeded_splits=options.seeded_splits)
    save_groups(catalog, dedupe)

    stage("shard")
    out.mkdir(parents=True, exist_ok=True)
    formats = ("parquet", "webdataset") if options.with_webdataset else ("parquet",)
    shard_options = ShardOptions(out=out, formats=formats, max_shard_bytes=options.max_shard_bytes,
                                 sources=tuple(sources), layout="by_source", exclude=frozenset(dedupe.dropped),
                                 write_readme=False, workers=options.workers)
    sharded = write_shards(catalog, store, shard_options, on_total=on_total, on_record=on_record)
    manifest = json.loads((out / "manifest.json").read_text())

    stage("stats")
    for folder in ("assets", "metadata"):
        shutil.rmtree(out / folder, ignore_errors=True)
        (out / folder).mkdir()
    published = (r for r in stats_rows(catalog, sources, exclude=dedupe.dropped) if r.caption_status != "rejected")
    stats = collect_stats(published)
    figures = draw_figures(stats, store, catalog.get)
    for name, png in figures.items():
        (out / "assets" / f"{name}.png").write_bytes(png)
    groups = [g.as_dict() for g in dedupe.groups]
    (out / "metadata" / "dedupe.json").write_text(
        json.dumps({**dedupe.summary(), "groups": groups}, indent=1, sort_keys=True) + "\n")

    stage("card")
    per = defaultdict(lambda: defaultdict(lambda: {"num_examples": 0, "num_bytes": 0}))
    wds: dict[str, list[str]] = defaultdict(list)
    for shard in manifest["shards"]:
        if shard["format"] == "parquet":
            for config in ("default", shard["source"]):
                per[config][shard["split"]]["num_examples"] += shard["samples"]
                per[config][shard["split"]]["num_bytes"] += shard["bytes"]
        else:
            wds[f"{shard['source']}/{shard['split']}"].append(shard["path"])

    def ordered(splits: dict) -> dict:
        return {s: dict(splits[s]) for s in SPLITS if s in splits}
    configs = [ConfigInfo("default", {s: f"data/*/{s}-*.parquet" for s in ordered(per["default"])},
                          ordered(per["default"]))]
    configs += [ConfigInfo(s, {sp: f"data/{s}/{sp}-*.parquet" for sp in ordered(per[s])}, ordered(per[s]))
                for s in sources if s in per]
    card = CardInput(repo_id=options.repo_id, entries=entries, policy=policy, configs=configs,
                     stats=public_stats(stats), figures=[f"assets/{n}.png" for n in figures],
                     dedupe={**dedupe.summary(), "group_list": groups}, webdataset=dict(wds))
    (out / "README.md").write_text(render_card(card))
    return {"out": str(out), "records": sharded["records"], "splits": sharded["splits"],
            "configs": {c.name: {s: v["num_examples"] for s, v in c.splits.items()} for c in configs},
            "files": sum(1 for p in out.rglob("*") if p.is_file()), "shards": sharded["shards"],
            "policy": policy.as_dict(), "gated": policy.gated,
            "dedupe": {k: v for k, v in dedupe.summary().items() if k != "dropped"},
            "dropped_for_leakage": sorted(dedupe.dropped), "figures": sorted(figures)}
