"""The dataset card (`README.md` of the Hub repo): YAML metadata + a body generated from the catalog,
sources.yaml, the shard manifest, the dedupe result and the stats figures.

The YAML follows what `datasets` 5.x and the Hub read: `configs` with `data_files` globs (one
config per source plus `default` over all of them), `dataset_info` per config with features and
split sizes, card metadata (`license`, `task_categories`, ...) and, when a source's terms require
it, the gating fields `extra_gated_*`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from .license_policy import Policy
from .registry import SourceEntry
from .writers.rows import FEATURES

TASK_CATEGORIES = ["image-segmentation", "object-detection", "image-classification", "image-to-text",
                   "text-to-image"]
TAGS = ["industrial", "manufacturing", "defect-detection", "anomaly-detection", "quality-inspection",
        "image-text", "imdd"]
# License ids the Hub knows (lower case); anything else is described in the card body only.
HUB_LICENSES = {"apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "cc0-1.0", "cc-by-2.0", "cc-by-3.0",
                "cc-by-4.0", "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0",
                "cc-by-nd-4.0", "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0",
                "cc-by-nc-sa-4.0", "gpl-2.0", "gpl-3.0", "lgpl-3.0", "odbl", "odc-by", "pddl", "unlicense"}
IMDD_CITATION = """@misc{imdd,
  title = {IMDD: an industrial defect image-text corpus},
  note = {built with imdd-build},
  year = {2025}}"""


def size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]
    for limit, name in bounds:
        if n < limit:
            return name
    return "100M<n<1B"


def _yaml_type(feature: dict) -> dict:
    kind = feature.get("_type")
    if kind == "Value":
        return {"dtype": feature["dtype"]}
    if kind == "Image":
        return {"dtype": "image"}
    if kind == "List":
        inner = _yaml_type(feature["feature"])
        return {"list": inner["dtype"] if set(inner) == {"dtype"} else inner["struct"]}
    return {"struct": [{"name": name, **_yaml_type(sub)} for name, sub in feature.items()]}


def features_yaml(features: dict = FEATURES) -> list[dict]:
    """The features in the README `dataset_info` form (what `datasets.Features._to_yaml_list` writes)."""
    return [{"name": name, **_yaml_type(f)} for name, f in features.items()]


@dataclass
class ConfigInfo:
    name: str
    data_files: dict[str, str]  # split -> glob
    splits: dict[str, dict[str, int]]  # split -> {num_examples, num_bytes}


@dataclass
class CardInput:
    repo_id: str
    entries: dict[str, SourceEntry]  # the published sources
    policy: Policy
    configs: list[ConfigInfo]
    stats: dict  # stats.public_stats of the published records
    figures: list[str]  # repo paths of the PNG figures
    dedupe: dict  # DedupeResult.summary() + "groups" (leakage groups, as dicts)
    webdataset: dict[str, list[str]] = field(default_factory=dict)  # "<source>/<split>" -> tar paths
    pretty_name: str = "IMDD: industrial defect images with masks, boxes and captions"


def card_metadata(c: CardInput) -> dict:
    total = c.stats["images"]
    licenses = sorted({e.license.lower() for e in c.entries.values()} & HUB_LICENSES)
    meta: dict = {
        "pretty_name": c.pretty_name,
        "license": ["other", *licenses],
        "license_name": "per-source",
        "license_details": "Each image keeps its source dataset's license (column `license`; table in this card).",
        "language": ["en"],
        "task_categories": TASK_CATEGORIES,
        "size_categories": [size_category(total)],
        "tags": TAGS + sorted({d.replace("_", "-") for d in c.stats["by_domain"]}),
        "source_datasets": [e.homepage or e.name for e in c.entries.values()],
        "configs": [{"config_name": cfg.name, **({"default": True} if cfg.name == "default" else {}),
                     "data_files": [{"split": s, "path": p} for s, p in cfg.data_files.items()]}
                    for cfg in c.configs],
        "dataset_info": [{"config_name": cfg.name, "features": features_yaml(),
                          "splits": [{"name": s, "num_bytes": v["num_bytes"], "num_examples": v["num_examples"]}
                                     for s, v in cfg.splits.items()],
                          "download_size": sum(v["num_bytes"] for v in cfg.splits.values()),
                          "dataset_size": sum(v["num_bytes"] for v in cfg.splits.values())}
                         for cfg in c.configs],
    }
    if c.policy.gated:
        terms = "; ".join(f"{s}: {e.license}" for s, e in c.entries.items())
        meta["extra_gated_prompt"] = (
            "This dataset combines images under their source datasets' licenses (" + terms + "). "
            + ("Some of them allow non-commercial or research use only. " if c.policy.noncommercial else "")
            + "By requesting access you agree to follow each source's license and to cite the sources.")
        meta["extra_gated_fields"] = {"Name": "text", "Affiliation": "text", "Intended use": "text",
                                      "I agree to use this dataset according to each source's license": "checkbox"}
        if c.policy.noncommercial:
            meta["extra_gated_fields"]["I will not use the non-commercial sources for commercial purposes"] = \
                "checkbox"
        meta["extra_gated_button_content"] = "Agree and request access"
    return meta


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |" for row in rows]
    return lines


def _cite_key(citation: str) -> str:
    head = citation.strip().split("\n", 1)[0]
    return head.split("{", 1)[1].rstrip(",") if "{" in head else ""


def card_body(c: CardInput) -> list[str]:
    s = c.stats
    lines = [f"# {c.pretty_name}", ""]
    if c.policy.noncommercial:
        names = ", ".join(f"**{x}** ({c.entries[x].license})" for x in c.policy.noncommercial)
        lines += [f"> **Non-commercial / research use only for part of this dataset.** {names} may not be used "
                  "commercially. Access is gated: you accept each source's license before downloading. "
                  "Filter on the `source` column (or load only the per-source configs you may use) for "
                  "commercial work.", ""]
    lines += [f"{s['images']} industrial images (512x512 RGB) from {len(c.entries)} source dataset(s), with "
              f"defect masks, boxes, defect types and captions: {s['by_label']['defective']} defective, "
              f"{s['by_label']['normal']} normal. Built with `imdd-build` from the sources' official downloads; "
              "each row keeps its source, license, original size and the geometry that maps the 512x512 "
              "canvas back to the original image.", ""]
    lines += ["## Configurations and splits", ""]
    split_names = [x for x in ("train", "validation", "test", "unlabeled")
                   if any(x in cfg.splits for cfg in c.configs)]
    lines += _table(["config", *split_names, "files"],
                    [[f"`{cfg.name}`", *[cfg.splits.get(x, {}).get("num_examples", 0) for x in split_names],
                      ", ".join(f"`{p}`" for p in cfg.data_files.values())] for cfg in c.configs])
    lines += ["", "## Sources and licenses", ""]
    rows = []
    for sid, e in c.entries.items():
        cite = _cite_key(e.citation)
        rows.append([f"`{sid}`", f"[{e.name}]({e.homepage})" if e.homepage else e.name,
                     s["by_source"].get(sid, 0), ", ".join(e.all_domains()), e.license, e.redistribution,
                     f"`{cite}`" if cite else "-"])
    lines += _table(["config", "dataset", "images", "domains", "license", "redistribution", "citation"], rows)
    notes = [f"* `{sid}`: {e.license_note}" for sid, e in c.entries.items() if e.license_note]
    if notes:
        lines += ["", "License notes (verify before use):", "", *notes]
    if c.policy.gated:
        lines += ["", "Access is gated because of: " + "; ".join(c.policy.gated_reasons) + "."]
    lines += ["", "## Contents", "", "### Images per domain", ""]
    lines += _table(["domain", "images"], [[d, n] for d, n in s["by_domain"].items()])
    lines += ["", "### Images per defect type", ""]
    lines += _table(["defect type", "images"], [[t, n] for t, n in s["by_defect_type"].items()] or [["-", 0]])
    lines += ["", "### Captions: provenance and verification", "",
              f"{s['captioned']} of {s['images']} images have a caption; {s['verified']} "
              f"({100 * s['verified_fraction']:.1f}%) are verified by an expert. `caption_source` says who wrote "
              "a caption (`template`: generated offline from the record's facts; `llm`: drafted by a model; "
              "`expert`: written by a person) and `caption_status` whether it was checked "
              "(`draft`, `verified`). Rejected captions are not published.", ""]
    lines += _table(["source/status", "images"], [[k, v] for k, v in s["caption_provenance"].items()])
    if s.get("caption_words"):
        w = s["caption_words"]
        lines += ["", f"Caption length: {w['min']}-{w['max']} words (median {w['median']:g})."]
    lines += ["", *split_section(c.dedupe)]
    lines += ["## Duplicates and split leakage", ""]
    d = c.dedupe
    lines += [f"Exact duplicates (same pixels) and near duplicates (64-bit DCT perceptual hash within "
              f"{d['radius']} bits) were searched across all sources: {d['group_count']} group(s) "
              f"({d['exact_groups']} exact, {d['near_groups']} near), {d['leakage_groups']} of them spanning "
              "an evaluation split (validation/test) and another split (leakage).", ""]
    if d["leakage_policy"] == "drop-train":
        lines += ["Leakage was resolved by keeping the copies in the group's most held-out split (test, else "
                  "validation) and dropping the others (train, unlabeled, or validation when test holds the image): "
                  f"{len(d['dropped'])} image(s) are not in this repository.", ""]
    else:
        lines += ["Leakage was reported but not resolved (`--leakage keep`): the groups below are in both splits.",
                  ""]
    leaks = [g for g in d.get("group_list", []) if g["leakage"]]
    if leaks:
        lines += _table(["group", "kind", "kept", "dropped"],
                        [[g["id"], g["kind"],
                          ", ".join(f"`{m['key']}`" for m in g["members"] if m["key"] not in g["dropped"]),
                          ", ".join(f"`{k}`" for k in g["dropped"]) or "-"] for g in leaks[:100]])
        if len(leaks) > 100:
            lines.append(f"\n... and {len(leaks) - 100} more: see `metadata/dedupe.json`.")
        lines.append("")
    lines += ["Every group (duplicates within one split too) is listed in `metadata/dedupe.json`.", ""]
    figures = [f for f in c.figures if "/samples_" not in f]
    samples = [f for f in c.figures if "/samples_" in f]
    if figures:
        lines += ["## Statistics", ""]
        lines += [f"![{f.rsplit('/', 1)[-1][:-4].replace('_', ' ')}]({f})" for f in figures]
        lines.append("")
    if samples:
        lines += ["## Samples", "", "Deterministic sample per domain; defect masks outlined in red.", ""]
        lines += [f"![{f.rsplit('/', 1)[-1][:-4].replace('_', ' ')}]({f})" for f in samples]
        lines.append("")
    lines += _how_to_load(c)
    lines += ["## Fields", "",
              "`key` (stable sample id: source + original path), `image` (512x512 RGB), `mask` (512x512 L, "
              "0/255, null when the record has none), `class_mask` (512x512 L: 0 background, k = 1 + index into "
              "`defect_types`; null where the source does not say which pixel is which type), `caption`, "
              "`source`, `domain`, `product`, `split`, "
              "`source_split`, `label` (normal/defective), `defect_types`, `source_labels`, `defect_labels`, "
              "`boxes` (512x512 pixel coordinates), `attributes` (location, area fraction, regions, shape from "
              "the mask, instances per type), `geometry` (maps canvas pixels back to the original), `parent` "
              "(tiles of a long strip: the image they were cut from), `resize_note`, original size/mode/format, "
              "`license`, and the caption provenance fields.", ""]
    lines += ["## Known limitations", "",
              "* Licenses are as published by each source; several were not verified by the authors of this "
              "repository (see the license notes). Check the terms that apply to your use.",
              "* Images are resized to 512x512 (letterbox with black padding unless the source says otherwise); "
              "small defects can shrink below a few pixels. `geometry` maps masks back to the original size.",
              "* Template captions state only what the record's facts support (location, size, shape from the "
              "mask); unverified captions can still be wrong. Prefer `caption_status == 'verified'` for "
              "evaluation.",
              "* Sources without an official split get a seeded 70/10/20 split drawn per near-duplicate group "
              "(`split_origin: seeded`, or `seeded-group` where the group's split is not the image's own draw); "
              "groups are found by perceptual hash, so copies of one part it does not link (re-shot from another "
              "angle, heavily cropped) can still land in different splits.",
              "* Near-duplicate detection uses a perceptual hash: heavily cropped, rotated or re-shot copies of "
              "the same part are not found, and look-alike parts of one product line can be grouped.",
              "* Class imbalance: anomaly-detection sources are mostly normal images in train and defective "
              "ones in test.", ""]
    lines += ["## Citation", "", "If you use this dataset, cite it and every source dataset you use:", "",
              "```bibtex", IMDD_CITATION]
    for e in c.entries.values():
        if e.citation.strip():
            lines += ["", e.citation.strip()]
    lines += ["```", ""]
    return lines


def _percent(fractions: dict) -> str:
    return "/".join(f"{100 * v:g}" for v in fractions.values())


def split_section(d: dict) -> list[str]:
    """## Splits: the two rules (official: drop-train; seeded: regrouped, nothing dropped) with the
    build's numbers, and each source's achieved fractions (`DedupeResult.summary()`)."""
    by_source = d.get("splits_by_source") or {}
    official_dropped = sum(v["dropped"] for v in by_source.values() if v["origin"] == "official")
    seeded = {s: v for s, v in by_source.items() if v["origin"] != "official"}
    moved = sum(v["moved"] for v in by_source.values())
    policy = ("drop-train (the copies in the group's most held-out split, test else validation, are kept and the "
              "others left out)" if d["leakage_policy"] == "drop-train" else "keep (reported, nothing left out)")
    lines = ["## Splits", "",
             "Two rules decide a row's `split`; `split_origin` says which one applied.", "",
             "* **Official split** (`split_origin: official`): the source's own split, never changed. A "
             "near-duplicate group that spans an evaluation split (validation/test) and another split is leakage, "
             f"resolved by {policy}; {official_dropped} image(s) of official-split sources are not in this "
             "repository.",
             "* **Seeded split** (`split_origin: seeded`, sources without an official split): drawn by imdd-build "
             "per near-duplicate group, not per image, so the same part photographed several times (other "
             "lighting, exposure) stays in one split: regrouped, nothing dropped. The groups of a source are "
             "ordered by a seeded hash of their smallest key and fill the source's fractions in that order; "
             f"{moved} image(s) sit in their group's split instead of their own per-image draw "
             "(`split_origin: seeded-group`; the WebDataset `.json` keeps the draw as `sample_split`)."]
    if seeded:
        lines[-1] += f" Seeded sources here: {', '.join(f'`{s}`' for s in seeded)}."
    if by_source:
        columns = [s for s in ("train", "validation", "test", "unlabeled")
                   if any(s in v["splits"] for v in by_source.values())]
        rows = []
        for source, v in by_source.items():
            origin = v["origin"] + (f" (target {_percent(v['target'])})" if v.get("target") else "")
            rows.append([f"`{source}`", origin, sum(v["splits"].values()),
                         *[f"{v['splits'].get(s, 0)} ({100 * v['fractions'].get(s, 0):.1f}%)" for s in columns],
                         v["moved"], v["dropped"]])
        lines += ["", *_table(["source", "split origin", "images", *columns, "moved to group split",
                               "dropped for leakage"], rows)]
    return [*lines, ""]


def _how_to_load(c: CardInput) -> list[str]:
    first = next((cfg.name for cfg in c.configs if cfg.name != "default"), "default")
    lines = ["## How to load", "", "```python", "from datasets import load_dataset",
             f'ds = load_dataset("{c.repo_id}")                  # every source (config `default`)',
             f'one = load_dataset("{c.repo_id}", "{first}")      # one source',
             f'stream = load_dataset("{c.repo_id}", split="train", streaming=True)  # no full download',
             'row = next(iter(stream)); row["image"], row["mask"], row["caption"], row["boxes"]', "```", ""]
    if c.webdataset:
        example = next(iter(c.webdataset.values()))
        pattern = example[0].rsplit("-", 1)[0] + "-{" + example[0].rsplit("-", 1)[1][:-4] + ".." + \
            example[-1].rsplit("-", 1)[1][:-4] + "}.tar"
        lines += ["WebDataset shards (same rows; members `png`/`jpg`, `mask.png` and `class_mask.png` when "
                  "any record of the source has one, `json`, `txt`) are under "
                  "`webdataset/<source>/`; `manifest.json` lists every shard with its sha256:", "",
                  "```python", "import webdataset as wds",
                  f'url = "https://huggingface.co/datasets/{c.repo_id}/resolve/main/{pattern}"',
                  'urls = f"pipe:curl -s -L -H \'Authorization:Bearer {HF_TOKEN}\' {url}"  # gated repo: token',
                  "ds = wds.WebDataset(urls, shardshuffle=100, nodesplitter=wds.split_by_node).decode(\"pil\")",
                  "```", ""]
    return lines


def render_card(c: CardInput) -> str:
    header = yaml.safe_dump(card_metadata(c), sort_keys=False, allow_unicode=True, width=100).rstrip()
    return "\n".join(["---", header, "---", "", *card_body(c)])
