"""Corpus statistics, their plots (matplotlib, PNG) and a self-contained HTML report.

The same figures go into the dataset card as PNG files (`assets/*.png`), so the report and the
card always agree. matplotlib is imported only when figures are drawn (the `publish` extra).
The catalog is read as a stream of the few fields the counts need (`stats_rows`), and what is
kept does not grow with the number of records.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator
from typing import NamedTuple

import numpy as np
from PIL import Image

from .catalog import Catalog
from .record import Record
from .store import Store

SAMPLES_PER_DOMAIN = 8
TOP_DEFECT_TYPES = 30


STATS_FIELDS = ("key", "source", "domain", "split", "label", "defect_types", "caption_status", "caption_source",
                "caption", "mask", "attributes.area_fraction", "split_origin")
SPLIT_ORDER = ("train", "validation", "test", "unlabeled")


class StatsRow(NamedTuple):
    """The fields of a record that the statistics read (a row of `Catalog.iter_fields`)."""

    key: str
    source: str
    domain: str
    split: str
    label: str
    defect_types: list[str]
    caption_status: str | None
    caption_source: str | None
    caption: str | None
    mask: str | None
    area_fraction: float
    split_origin: str = "official"


def stats_rows(catalog: Catalog, sources: Iterable[str] = (), exclude: Collection[str] = ()) -> Iterator[StatsRow]:
    """The catalog as a stream of `StatsRow` (of `sources`; keys in `exclude` left out), in key order."""
    for row in catalog.iter_fields(STATS_FIELDS, sources):
        if row[0] not in exclude:
            yield StatsRow(*row[:5], json.loads(row[5] or "[]"), *row[6:10], float(row[10] or 0.0),
                           row[11] or "official")


def split_fractions(counts: Counter, origins: set[str]) -> dict:
    """One source's splits: `origin` (official, seeded or mixed), `splits` (images per split) and
    `fractions` (of its images, 4 digits)."""
    total = sum(counts.values())
    splits = {s: counts[s] for s in SPLIT_ORDER if counts[s]}
    return {"origin": next(iter(origins)) if len(origins) == 1 else "mixed", "splits": splits,
            "fractions": {s: round(n / total, 4) for s, n in splits.items()} if total else {}}


def _sample_order(key: str) -> str:
    return hashlib.sha256(f"sample:{key}".encode()).hexdigest()


def _median(counts: Counter) -> float:
    """np.median of the multiset {value: count} without expanding it."""
    total = sum(counts.values())
    middle = [(total - 1) // 2, total // 2]
    out, seen = [], 0
    for value in sorted(counts):
        seen += counts[value]
        while middle and middle[0] < seen:
            out.append(value)
            middle.pop(0)
    return (out[0] + out[1]) / 2


def collect_stats(rows: Iterable[StatsRow]) -> dict:
    """Counts and distributions over `rows` (plus the keys of a deterministic sample per domain).

    Memory does not grow with the number of rows: per-image values are kept as {value: count}
    (caption words, mask areas rounded to 5 digits by `maskops`) and each domain keeps only its
    best `SAMPLES_PER_DOMAIN` sample candidates."""
    by = defaultdict(Counter)
    label_by_source: dict[str, Counter] = defaultdict(Counter)
    split_by_source: dict[str, Counter] = defaultdict(Counter)
    origin_by_source: dict[str, set] = defaultdict(set)
    status_by_source: dict[str, Counter] = defaultdict(Counter)
    provenance = Counter()
    caption_words: Counter = Counter()
    mask_areas: Counter = Counter()
    samples: dict[str, list[tuple[str, str]]] = defaultdict(list)
    total = 0
    for r in rows:
        total += 1
        by["source"][r.source] += 1
        by["domain"][r.domain] += 1
        by["split"][r.split] += 1
        by["label"][r.label] += 1
        for t in set(r.defect_types or ([] if r.label == "normal" else ["unspecified"])):
            by["defect_type"][t] += 1
        label_by_source[r.source][r.label] += 1
        split_by_source[r.source][r.split] += 1
        origin_by_source[r.source].add("seeded" if r.split_origin.startswith("seeded") else r.split_origin)
        status = r.caption_status or "none"
        status_by_source[r.source][status] += 1
        provenance[f"{r.caption_source or 'none'}/{status}"] += 1
        if r.caption:
            caption_words[len(r.caption.split())] += 1
        if r.mask and r.label == "defective":
            mask_areas[float(r.area_fraction)] += 1
        candidates = samples[r.domain]
        candidates.append((_sample_order(r.key), r.key))
        if len(candidates) >= 8 * SAMPLES_PER_DOMAIN:
            candidates.sort()
            del candidates[SAMPLES_PER_DOMAIN:]
    verified = sum(c["verified"] for c in status_by_source.values())
    captioned = sum(caption_words.values())
    return {
        "images": total,
        "by_source": dict(sorted(by["source"].items())),
        "by_domain": dict(by["domain"].most_common()),
        "by_split": dict(by["split"]),
        "by_label": {"normal": by["label"]["normal"], "defective": by["label"]["defective"]},
        "by_defect_type": dict(by["defect_type"].most_common()),
        "label_by_source": {s: {"normal": c["normal"], "defective": c["defective"]}
                            for s, c in sorted(label_by_source.items())},
        "split_fractions_by_source": {s: split_fractions(c, origin_by_source[s])
                                      for s, c in sorted(split_by_source.items())},
        "caption_status_by_source": {s: dict(sorted(c.items())) for s, c in sorted(status_by_source.items())},
        "caption_provenance": dict(sorted(provenance.items())),
        "captioned": captioned,
        "verified": verified,
        "verified_fraction": round(verified / total, 4) if total else 0.0,
        "caption_words": {"min": min(caption_words), "median": float(_median(caption_words)),
                          "max": max(caption_words),
                          "mean": round(sum(w * c for w, c in caption_words.items()) / captioned, 1)}
        if captioned else {},
        "caption_word_counts": dict(sorted(caption_words.items())),  # {words: images}
        "mask_area_fractions": dict(sorted(mask_areas.items())),  # {area fraction: images}
        "samples": {d: [k for _, k in sorted(v)[:SAMPLES_PER_DOMAIN]] for d, v in sorted(samples.items())},
    }


# -- figures -------------------------------------------------------------------------------------
def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _barh(title: str, counts: dict[str, int], xlabel: str = "images"):
    from matplotlib.figure import Figure

    names = list(counts)[::-1]
    fig = Figure(figsize=(7, max(2.0, 0.3 * len(names) + 1.2)), layout="constrained")
    ax = fig.subplots()
    ax.barh(names, [counts[n] for n in names], color="#4c72b0")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    for y, n in enumerate(names):
        ax.text(counts[n], y, f" {counts[n]}", va="center", fontsize=8)
    return fig


def _stacked(title: str, table: dict[str, dict[str, int]], columns: list[str], colors: list[str]):
    from matplotlib.figure import Figure

    rows = list(table)[::-1]
    fig = Figure(figsize=(7, max(2.0, 0.35 * len(rows) + 1.4)), layout="constrained")
    ax = fig.subplots()
    left = np.zeros(len(rows))
    for col, color in zip(columns, colors):
        values = np.array([table[r].get(col, 0) for r in rows], dtype=float)
        ax.barh(rows, values, left=left, label=col, color=color)
        left += values
    ax.set_title(title)
    ax.set_xlabel("images")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return fig


def _hist(title: str, counts: dict[float, int], xlabel: str, bins: int = 30):
    """Histogram of a multiset given as {value: count}."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3), layout="constrained")
    ax = fig.subplots()
    if counts:
        ax.hist(list(counts), weights=list(counts.values()), bins=bins, color="#55a868")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("images")
    return fig


def _grid(domain: str, records: list[Record], store: Store):
    from matplotlib.figure import Figure

    cols = 4
    rows = max(1, -(-len(records) // cols))
    fig = Figure(figsize=(cols * 2, rows * 2.2 + 0.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, r in zip(axes, records):
        with Image.open(io.BytesIO(store.read(r.image))) as im:
            thumb = np.asarray(im.convert("RGB").resize((160, 160), Image.BOX))
        ax.imshow(thumb)
        if r.mask:
            with Image.open(io.BytesIO(store.read(r.mask))) as m:
                ax.contour(np.asarray(m.convert("L").resize((160, 160), Image.NEAREST)) > 0, levels=[0.5],
                           colors="red", linewidths=0.8)
        label = ", ".join(r.defect_types) or r.label
        ax.set_title(f"{r.product}\n{label}"[:48], fontsize=7)
    fig.suptitle(f"samples: {domain}", fontsize=10)
    return fig


def figure_names(stats: dict) -> list[str]:
    fixed = ["images_per_source", "images_per_domain", "defect_types", "label_balance", "caption_length",
             "mask_area", "verification"]
    return fixed + [f"samples_{d}" for d in stats["samples"]]


def draw_figures(stats: dict, store: Store, get_record) -> dict[str, bytes]:
    """name -> PNG bytes for every figure of the report and the card."""
    top = dict(list(stats["by_defect_type"].items())[:TOP_DEFECT_TYPES])
    statuses = ["verified", "draft", "rejected", "none"]
    figs = {
        "images_per_source": _barh("Images per source", stats["by_source"]),
        "images_per_domain": _barh("Images per domain", stats["by_domain"]),
        "defect_types": _barh(f"Images per defect type (top {TOP_DEFECT_TYPES})", top or {"(none)": 0}),
        "label_balance": _stacked("Normal / defective per source", stats["label_by_source"],
                                  ["normal", "defective"], ["#8da0cb", "#fc8d62"]),
        "caption_length": _hist("Caption length", stats["caption_word_counts"], "words"),
        "mask_area": _hist("Defect mask area (defective images with a mask)",
                           {100 * a: n for a, n in stats["mask_area_fractions"].items()}, "% of the visible object"),
        "verification": _stacked("Caption status per source (verification coverage)",
                                 stats["caption_status_by_source"], statuses,
                                 ["#1b9e77", "#d95f02", "#7570b3", "#bbbbbb"]),
    }
    for domain, keys in stats["samples"].items():
        figs[f"samples_{domain}"] = _grid(domain, [get_record(k) for k in keys], store)
    return {name: _png(fig) for name, fig in figs.items()}


def html_report(stats: dict, figures: dict[str, bytes], title: str = "IMDD corpus statistics") -> str:
    """One HTML file: tables and every figure as a base64 data URI (no external files)."""
    def table(caption: str, counts: dict) -> str:
        rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{v}</td></tr>" for k, v in counts.items())
        return f"<table><caption>{html.escape(caption)}</caption><tr><th></th><th>images</th></tr>{rows}</table>"

    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:2px 8px}img{max-width:100%}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p>{stats['images']} images; {stats['by_label']['defective']} defective, "
             f"{stats['by_label']['normal']} normal; {stats['captioned']} captioned, {stats['verified']} verified "
             f"({100 * stats['verified_fraction']:.1f}%).</p>",
             table("per source", stats["by_source"]), table("per split", stats["by_split"]),
             table("per domain", stats["by_domain"]), table("per defect type", stats["by_defect_type"]),
             table("caption source/status", stats["caption_provenance"]),
             split_table(stats.get("split_fractions_by_source", {}))]
    for name, png in figures.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<h2>{html.escape(name.replace('_', ' '))}</h2>"
                     f"<img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def split_table(by_source: dict) -> str:
    """The HTML table of each source's split origin and achieved split fractions."""
    columns = [s for s in SPLIT_ORDER if any(s in v["splits"] for v in by_source.values())]
    head = "".join(f"<th>{s}</th>" for s in columns)
    rows = "".join(
        f"<tr><td>{html.escape(source)}</td><td>{html.escape(v['origin'])}</td>"
        + "".join(f"<td>{v['splits'].get(s, 0)} ({100 * v['fractions'].get(s, 0):.1f}%)</td>" for s in columns)
        + "</tr>" for source, v in by_source.items())
    return (f"<table><caption>splits per source (achieved fractions; seeded: drawn per near-duplicate group by "
            f"dedupe/shard)</caption><tr><th>source</th><th>split origin</th>{head}</tr>{rows}</table>")


def public_stats(stats: dict) -> dict:
    """The stats without the long per-image lists (for --json and the card)."""
    return {k: v for k, v in stats.items() if k not in ("caption_word_counts", "mask_area_fractions")}
