"""`imdd-models precompute`: encode every image once into latent shards that training reads.

    OUT/latents.json                  what was encoded, with which components, how far it got
    OUT/latents/{split}-{i:05d}.parquet   key, caption, latent (fp16 VAE latent mean x scaling factor),
                                      latent_flip (the horizontally flipped image's, with --flip),
                                      image_embed (fp16 CLIP image embedding), input_ids (77 caption tokens),
                                      split, source, label (for --split/--where)

Shard i holds the i-th `shard_size` usable records in source order, so the output is deterministic.
Each shard is written to a temporary name and renamed, then the progress (shards done, raw rows
consumed) is recorded; a killed run resumes after the last recorded shard, and a shard written but not
yet recorded is rewritten with the same bytes under the same name, so nothing is duplicated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from imdd_build.errors import RunError

from ..components import load_components
from ..data import BadSample, ReadStats, decode_record, iter_raw, resolve
from ..data.sources import LATENT_MANIFEST
from ..jsonfile import read_json

FORMAT_VERSION = 1
SCHEMA = pa.schema([("key", pa.string()), ("caption", pa.string()), ("latent", pa.binary()),
                    ("latent_flip", pa.binary()), ("latent_shape", pa.list_(pa.int32())),
                    ("image_embed", pa.binary()), ("input_ids", pa.list_(pa.int32())),
                    # carried over so that --split/--where work on latents as on images
                    ("split", pa.string()), ("source", pa.string()), ("label", pa.string())])


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _encode(comps, records: list[dict], flip: bool) -> list[dict]:
    images = [r["image"] for r in records]
    latents = comps.encode_latents(comps.pixels(images)).float().cpu()
    flipped = comps.encode_latents(comps.pixels(images, flip=True)).float().cpu() if flip else None
    embeds = comps.image_embeds(images).float().cpu()
    ids = comps.tokenize([r["caption"] for r in records])
    rows = []
    for i, r in enumerate(records):
        rows.append({"key": r["key"], "caption": r["caption"],
                     "latent": latents[i].numpy().astype(np.float16).tobytes(),
                     "latent_flip": flipped[i].numpy().astype(np.float16).tobytes() if flip else None,
                     "latent_shape": list(latents.shape[1:]),
                     "image_embed": embeds[i].numpy().astype(np.float16).tobytes(),
                     "input_ids": ids[i].tolist(),
                     **{k: r.get(k) for k in ("split", "source", "label")}})
    return rows


def _write_shard(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), tmp, compression="zstd")
    os.replace(tmp, path)


def precompute(data: str, components: Path, out: Path, split: str | None = None, where: str | None = None,
               batch_size: int = 16, shard_size: int = 1024, flip: bool = False, device: str = "cpu",
               on_total: Callable[[int], None] | None = None, on_advance: Callable[[int], None] | None = None) -> dict:
    """Encode `data` into latent shards under `out`, resuming a previous run with the same options."""
    out = Path(out)
    source = resolve(data, split)
    if source.kind == "latents":
        raise RunError(f"{data}: already latent shards; give the image shards")
    comps = load_components(components, device=device)
    options = {"data": str(data), "components": str(Path(components).resolve()), "split": split, "where": where,
               "shard_size": shard_size, "flip": flip}
    manifest_path = out / LATENT_MANIFEST
    state = {"shards_done": 0, "raw_consumed": 0, "samples": 0, "bad": 0, "bad_examples": []}
    if manifest_path.is_file():
        previous = read_json(manifest_path)
        if previous.get("options") != options:
            raise RunError(f"{out}: holds latents made with other options {previous.get('options')}; "
                           "use a new --out")
        state = previous["progress"]
    (out / "latents").mkdir(parents=True, exist_ok=True)
    for stale in (out / "latents").glob(".*.tmp"):
        stale.unlink()
    manifest = {"format_version": FORMAT_VERSION, "options": options, "resolution": comps.resolution,
                "scaling_factor": comps.scaling_factor, "components": comps.manifest, "progress": state,
                "complete": False}
    _write_json(manifest_path, manifest)
    prefix = split or "all"
    stats = ReadStats()
    pending, records, raw_index = [], [], 0
    resumed_from = state["shards_done"]
    total = _count_hint(Path(str(data)), split) if not where else None
    if on_total and total is not None:
        on_total(total)
    if on_advance:
        on_advance(state["samples"])

    def flush_shard() -> None:
        path = out / "latents" / f"{prefix}-{state['shards_done']:05d}.parquet"
        _write_shard(path, pending)
        state.update(shards_done=state["shards_done"] + 1, raw_consumed=raw_index,
                     samples=state["samples"] + len(pending))
        _write_json(manifest_path, manifest)
        pending.clear()

    def encode_batch() -> None:
        pending.extend(_encode(comps, records, flip))
        if on_advance:
            on_advance(len(records))
        records.clear()

    for raw_index, row in enumerate(iter_raw(source, split, where, stats), start=1):
        if raw_index <= state["raw_consumed"]:
            continue  # already in a recorded shard
        try:
            records.append(decode_record(row))
        except BadSample as exc:
            state["bad"] += 1
            state["bad_examples"] = (state["bad_examples"] + [str(exc)])[:20]
            continue
        if len(records) == batch_size or len(pending) + len(records) == shard_size:
            encode_batch()
        if len(pending) == shard_size:
            flush_shard()
    if records:
        encode_batch()
    if pending:
        flush_shard()
    state["raw_consumed"] = max(state["raw_consumed"], raw_index)
    manifest["complete"] = True
    manifest["samples"] = state["samples"]
    manifest["latent_shape"] = _latent_shape(out, prefix)
    _write_json(manifest_path, manifest)
    return {"out": str(out), "samples": state["samples"], "shards": state["shards_done"],
            "resumed_from_shard": resumed_from, "bad": state["bad"], "bad_examples": state["bad_examples"],
            "flip": flip, "latent_shape": manifest["latent_shape"]}


def _count_hint(root: Path, split: str | None) -> int | None:
    """Samples per the shard folder's manifest.json (Parquet entries), without reading any shard."""
    try:
        shards = json.loads((root / "manifest.json").read_text())["shards"]
    except (OSError, ValueError, KeyError):
        return None
    fmt = "parquet" if any(s.get("format") == "parquet" for s in shards) else "webdataset"
    return sum(s["samples"] for s in shards if s.get("format") == fmt and split in (None, s.get("split")))


def _latent_shape(out: Path, prefix: str) -> list[int] | None:
    first = out / "latents" / f"{prefix}-00000.parquet"
    if not first.is_file():
        return None
    return pq.read_table(first, columns=["latent_shape"]).column(0)[0].as_py()


def latent_sample(row: dict, use_flip: bool) -> dict:
    """A latent row as tensors: latents (C, h, w) float32, image_embeds (D,), input_ids (77,)."""
    data = row["latent_flip"] if use_flip and row.get("latent_flip") else row["latent"]
    latents = torch.from_numpy(np.frombuffer(data, dtype=np.float16).astype(np.float32).reshape(row["latent_shape"]))
    embeds = torch.from_numpy(np.frombuffer(row["image_embed"], dtype=np.float16).astype(np.float32))
    return {"latents": latents, "image_embeds": embeds, "input_ids": torch.tensor(row["input_ids"], dtype=torch.long)}
