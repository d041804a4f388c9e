"""`imdd-models precompute`: encode every image once into latent shards that training reads.

    OUT/latents.json                  what was encoded, with which components, how far it got
    OUT/latents/{split}-{i:05d}.parquet   key, caption, latent (VAE latent mean x scaling factor, fp16),
                                      latent_flip (the horizontally flipped image's, with --flip),
                                      image_embed (fp16 CLIP image embedding), image_embed_flip (the flipped
                                      image's, with --flip), input_ids (77 caption tokens),
                                      split, source, label and fields (every other record field as JSON text,
                                      for --split/--where)

`{split}` is the --split given, else `all` (every split: training's --split then filters the rows).

Shard i holds the i-th `shard_size` usable records in source order, so the output is deterministic.
Each shard is written to a temporary name and renamed, then the progress (shards done, raw rows
consumed) is recorded; a killed run resumes after the last recorded shard, and a shard written but not
yet recorded is rewritten with the same bytes under the same name, so nothing is duplicated.

At scale: launched as several processes (`accelerate launch -m imdd_models precompute ...` or `torchrun`),
process p of P takes its part of the source shards (the training stream's `slot_parts`: whole shards when
there are at least P, else every P-th row) and writes its own `{split}-{p:03d}-{i:05d}.parquet` with its own
progress in `OUT/progress-{p:03d}.json`; process 0 writes `latents.json` once all are done. Images are decoded
and preprocessed in DataLoader workers (`workers`, the output is the same for any number), and the VAE and
CLIP image tower run in `dtype` (bf16 on CUDA by default, fp32 on the CPU).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from imdd_build.errors import RunError

from ..components import load_components
from ..data import BadSample, decode_record, resolve
from ..data.columns import iter_light
from ..data.explain import no_records_message
from ..data.sources import LATENT_MANIFEST, data_spec, parquet_errors, shard_rows, wanted_split
from ..data.stream import slot_parts
from ..data.where import parse_where, selected
from ..jsonfile import read_json

FORMAT_VERSION = 1
SCHEMA = pa.schema([("key", pa.string()), ("caption", pa.string()), ("latent", pa.binary()),
                    ("latent_flip", pa.binary()), ("latent_shape", pa.list_(pa.int32())),
                    ("image_embed", pa.binary()), ("input_ids", pa.list_(pa.int32())),
                    # carried over so that --split/--where work on latents as on images
                    ("split", pa.string()), ("source", pa.string()), ("label", pa.string()),
                    ("image_embed_flip", pa.binary()), ("fields", pa.string())])
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_COLUMNS = ("key", "caption", "split", "source", "label")
_PIXELS = ("image_bytes", "mask_bytes", "class_mask_bytes")
# Options a folder written before they existed was made with (so that it still resumes).
_DEFAULT_OPTIONS = {"processes": 1, "dtype": "fp32"}


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _fields(row: dict) -> str:
    """The record fields a latent row has no column for, as JSON text (for --where on latents)."""
    rest = {k: v for k, v in row.items() if k not in _PIXELS and k not in _COLUMNS}
    return json.dumps(rest, sort_keys=True, default=str)


class _Prepared(IterableDataset):
    """This process's selected raw rows, decoded and preprocessed (in DataLoader workers when there are any).

    Yields one item per selected row, in order, numbered from 1 (`index`): the tensors the encoders take,
    or `bad` (the reason) for a row that does not decode, so that the numbering (and resume) never depends on
    which rows decode. Worker w of W prepares the rows with (index - 1) % W == w."""

    def __init__(self, source, split, where, rank: int, world: int, start: int, resolution: int, tokenizer,
                 image_processor, flip: bool):
        self.shards, self.split, self.terms = source.shards, split, parse_where(where)
        self.parts = slot_parts(len(source.shards), rank, world)
        self.start, self.resolution, self.flip = start, resolution, flip
        self.tokenizer, self.image_processor = tokenizer, image_processor

    def rows(self) -> Iterator[dict]:
        """The selected raw rows of this process's parts (split and --where applied), in source order."""
        for shard_index, every, offset in self.parts:
            index = 0
            for row in shard_rows(self.shards[shard_index]):
                if not selected(row, self.split, self.terms):
                    continue
                if index % every == offset:
                    yield row
                index += 1

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        wid, workers = (info.id, info.num_workers) if info else (0, 1)
        for index, row in enumerate(self.rows(), start=1):
            if index > self.start and (index - 1) % workers == wid:
                yield self.prepare(index, row)

    def prepare(self, index: int, row: dict) -> dict:
        """One row's encoder inputs: the image resized to the training resolution as uint8 (a quarter of the
        float pixels' bytes between processes; scaled to [-1, 1], and mirrored for --flip, where it is
        encoded), the CLIP-processed image (and the flipped image's), the caption tokens."""
        from PIL import Image
        try:
            record = decode_record(row)
        except BadSample as exc:
            return {"index": index, "bad": str(exc)}
        rgb = record["image"].convert("RGB")
        size = (self.resolution, self.resolution)
        resized = rgb if rgb.size == size else rgb.resize(size, Image.Resampling.BICUBIC)
        item = {"index": index, **{k: record.get(k) for k in _COLUMNS}, "fields": _fields(row),
                "pixels": torch.from_numpy(np.array(resized, dtype=np.uint8)).permute(2, 0, 1),
                "clip": self.image_processor(rgb, return_tensors="pt").pixel_values[0],
                "input_ids": self.tokenizer(record["caption"], padding="max_length",
                                            max_length=self.tokenizer.model_max_length, truncation=True,
                                            return_tensors="pt").input_ids[0]}
        if self.flip:
            flipped = rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)  # what the online path embeds when it flips
            item["clip_flip"] = self.image_processor(flipped, return_tensors="pt").pixel_values[0]
        return item


def _unbatched(item):
    return item


def _in_order(items, start: int) -> Iterator[dict]:
    """Items by `index` from start + 1 on, whatever order the workers deliver them in."""
    pending, expected = {}, start + 1
    for item in items:
        pending[item["index"]] = item
        while expected in pending:
            yield pending.pop(expected)
            expected += 1
    if pending:  # a worker died without raising: never write a shard with a hole in it
        raise RuntimeError(f"precompute: rows {sorted(pending)[:5]} arrived but {expected} never did")


def _encode(comps, items: list[dict], flip: bool) -> list[dict]:
    dtype = next(comps.image_encoder.parameters()).dtype

    def embed(key: str) -> torch.Tensor:
        clip = torch.stack([it[key] for it in items]).to(comps.device, dtype)
        return comps.image_encoder(pixel_values=clip).image_embeds.float().cpu()

    with torch.no_grad():
        # [-1, 1] as components.images_to_pixels computes it (x / 127.5 - 1 in fp32), on the encoder's device
        pixels = torch.stack([it["pixels"] for it in items]).to(comps.device).float() / 127.5 - 1.0
        latents = comps.encode_latents(pixels).float().cpu()
        embeds = embed("clip")
        if flip:  # the resized image mirrored, as images_to_pixels(flip=True) does
            flipped = comps.encode_latents(torch.flip(pixels, dims=[-1])).float().cpu()
            flipped_embeds = embed("clip_flip")

    def half(t: torch.Tensor) -> bytes:
        return t.numpy().astype(np.float16).tobytes()

    return [{**{k: it[k] for k in _COLUMNS}, "fields": it["fields"],
             "latent": half(latents[i]), "latent_flip": half(flipped[i]) if flip else None,
             "latent_shape": list(latents.shape[1:]), "image_embed": half(embeds[i]),
             "image_embed_flip": half(flipped_embeds[i]) if flip else None,
             "input_ids": it["input_ids"].tolist()} for i, it in enumerate(items)]


def _write_shard(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), tmp, compression="zstd")
    os.replace(tmp, path)


def _processes(device: str) -> tuple[int, int, Callable[[], None], str]:
    """(rank, world size, barrier, device) of this process: one, or one of those accelerate/torchrun launched."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, (lambda: None), device
    from accelerate import PartialState
    state = PartialState(cpu=not str(device).startswith("cuda"))
    return state.process_index, state.num_processes, state.wait_for_everyone, str(state.device)


def default_workers() -> int:
    """Decode workers when not given: the cores beside the main process, at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def precompute(data: str, components: Path, out: Path, split: str | None = None, where: str | None = None,
               batch_size: int = 16, shard_size: int = 1024, flip: bool = False, device: str = "cpu",
               dtype: str | None = None, workers: int | None = 0,
               on_total: Callable[[int], None] | None = None, on_advance: Callable[[int], None] | None = None) -> dict:
    """Encode `data` into latent shards under `out`, resuming a previous run with the same options.

    `dtype` (fp32, fp16, bf16; default bf16 on CUDA, fp32 otherwise) is what the VAE and the image tower run
    in; `workers` decode and preprocess (None: `default_workers()`)."""
    out = Path(out)
    rank, world, barrier, device = _processes(device)
    dtype = dtype or ("bf16" if str(device).startswith("cuda") else "fp32")
    if dtype not in DTYPES:
        raise RunError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    workers = default_workers() if workers is None else workers
    source = resolve(data, split)
    if source.kind == "latents":
        raise RunError(f"{data}: already latent shards; give the image shards")
    if not source.shards:
        raise RunError(f"{data}: no shards of split {split!r}")
    # A selection that is empty (an unknown split, a --where naming no field or matching nothing) is an error
    # before anything is written: the first selected row is looked for in the light columns (no pixels read).
    if next(iter_light(source, wanted_split(split), where), None) is None:
        raise RunError(no_records_message(data, split, where))
    options = {"data": data_spec(data), "components": str(Path(components).resolve()), "split": split,
               "where": where, "shard_size": shard_size, "flip": flip, "processes": world, "dtype": dtype}
    manifest_path = out / LATENT_MANIFEST
    progress_path = out / f"progress-{rank:03d}.json" if world > 1 else None
    state = {"shards_done": 0, "raw_consumed": 0, "samples": 0, "bad": 0, "bad_examples": [], "splits": {}}
    if manifest_path.is_file():
        previous = read_json(manifest_path)
        before = {**_DEFAULT_OPTIONS, **previous.get("options", {})}
        before["data"] = data_spec(before.get("data"))  # latents written before --data was stored resolved
        diffs = [f"{k}: {before.get(k)!r} -> {v!r}" for k, v in options.items() if before.get(k) != v]
        if diffs:
            raise RunError(f"{out}: holds latents made with other options ({'; '.join(diffs)}); use the same "
                           "options to resume, or a new --out")
        saved = previous["progress"] if progress_path is None else (
            read_json(progress_path) if progress_path.is_file() else None)
        if saved is not None:
            state = {**state, "splits": None, **saved}  # no per-split counts from a run before they existed
    comps = load_components(components, device=device, dtype=DTYPES[dtype] if dtype != "fp32" else None)
    barrier()  # every process has read the previous manifest before process 0 rewrites it
    (out / "latents").mkdir(parents=True, exist_ok=True)
    prefix = split or "all"
    name = (lambda i: f"{prefix}-{i:05d}.parquet") if world == 1 else (lambda i: f"{prefix}-{rank:03d}-{i:05d}.parquet")
    for stale in (out / "latents").glob(f".{prefix}-*.tmp" if world == 1 else f".{prefix}-{rank:03d}-*.tmp"):
        stale.unlink()
    manifest = {"format_version": FORMAT_VERSION, "options": options, "resolution": comps.resolution,
                "scaling_factor": comps.scaling_factor, "components": comps.manifest, "complete": False,
                "progress": state}

    def save_progress() -> None:
        if progress_path is None:
            _write_json(manifest_path, manifest)
        else:
            _write_json(progress_path, state)

    if rank == 0:
        _write_json(manifest_path, {k: v for k, v in manifest.items() if world == 1 or k != "progress"})
    resumed_from = state["shards_done"]
    total = _count_hint(Path(str(data)), split) if not where and world == 1 else None
    if on_total and total is not None:
        on_total(total)
    if on_advance:
        on_advance(state["samples"])
    pending, records = [], []
    raw_index = state["raw_consumed"]

    def flush_shard() -> None:
        _write_shard(out / "latents" / name(state["shards_done"]), pending)
        for row in pending if state["splits"] is not None else ():
            state["splits"][str(row["split"])] = state["splits"].get(str(row["split"]), 0) + 1
        state.update(shards_done=state["shards_done"] + 1, raw_consumed=raw_index,
                     samples=state["samples"] + len(pending))
        save_progress()
        pending.clear()

    def encode_batch() -> None:
        pending.extend(_encode(comps, records, flip))
        if on_advance:
            on_advance(len(records))
        records.clear()

    dataset = _Prepared(source, split, where, rank, world, state["raw_consumed"], comps.resolution,
                        comps.tokenizer, comps.image_processor, flip)
    items = (DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=_unbatched,
                        prefetch_factor=max(2, 2 * batch_size // workers),
                        pin_memory=str(device).startswith("cuda")) if workers > 0 else dataset)
    for item in _in_order(items, state["raw_consumed"]):
        raw_index = item["index"]
        if "bad" in item:
            state["bad"] += 1
            state["bad_examples"] = (state["bad_examples"] + [item["bad"]])[:20]
            continue
        records.append(item)
        if len(records) == batch_size or len(pending) + len(records) == shard_size:
            encode_batch()
        if len(pending) == shard_size:
            flush_shard()
    if records:
        encode_batch()
    if pending:
        flush_shard()
    state["raw_consumed"] = max(state["raw_consumed"], raw_index)
    save_progress()
    barrier()
    if rank != 0:
        return {"out": str(out), "rank": rank, "samples": state["samples"], "shards": state["shards_done"]}
    states = [state] if world == 1 else [read_json(out / f"progress-{r:03d}.json") for r in range(world)]
    samples = sum(s["samples"] for s in states)
    bad = sum(s["bad"] for s in states)
    bad_examples = [e for s in states for e in s["bad_examples"]][:20]
    if samples == 0:
        if not bad:
            raise RunError(no_records_message(data, split, where))
        raise RunError(f"{data}: no usable samples (split={split}, where={where}); {bad} bad, first: {bad_examples[0]}")
    splits: dict[str, int] | None = {}
    for s in states:
        if s.get("splits") is None:
            splits = None
            break
        for k, v in s["splits"].items():
            splits[k] = splits.get(k, 0) + v
    manifest.update(complete=True, samples=samples, splits=splits,
                    latent_shape=_latent_shape(out))
    if world > 1:
        manifest.pop("progress")
        manifest["progress_by_process"] = states
    _write_json(manifest_path, manifest)
    return {"out": str(out), "samples": samples, "shards": sum(s["shards_done"] for s in states),
            "resumed_from_shard": resumed_from, "bad": bad, "bad_examples": bad_examples,
            "flip": flip, "latent_shape": manifest["latent_shape"], "processes": world, "dtype": dtype,
            "workers": workers, "splits": manifest["splits"]}


def _count_hint(root: Path, split: str | None) -> int | None:
    """Samples per the shard folder's manifest.json (Parquet entries), without reading any shard."""
    try:
        shards = json.loads((root / "manifest.json").read_text())["shards"]
    except (OSError, ValueError, KeyError):
        return None
    fmt = "parquet" if any(s.get("format") == "parquet" for s in shards) else "webdataset"
    split = wanted_split(split)
    return sum(s["samples"] for s in shards if s.get("format") == fmt and split in (None, s.get("split")))


def _latent_shape(out: Path) -> list[int] | None:
    first = next(iter(sorted((out / "latents").glob("*.parquet"))), None)
    if first is None:
        return None
    with parquet_errors(first):
        return pq.read_table(first, columns=["latent_shape"]).column(0)[0].as_py()


def latent_sample(row: dict, use_flip: bool) -> dict:
    """A latent row as tensors: latents (C, h, w) float32, image_embeds (D,), input_ids (77,); with `use_flip`
    the flipped image's latent and (in shards that have it) its image embedding."""
    use_flip = use_flip and bool(row.get("latent_flip"))
    data = row["latent_flip"] if use_flip else row["latent"]
    latents = torch.from_numpy(np.frombuffer(data, dtype=np.float16).astype(np.float32).reshape(row["latent_shape"]))
    embed = row["image_embed_flip"] if use_flip and row.get("image_embed_flip") else row["image_embed"]
    embeds = torch.from_numpy(np.frombuffer(embed, dtype=np.float16).astype(np.float32))
    return {"latents": latents, "image_embeds": embeds, "input_ids": torch.tensor(row["input_ids"], dtype=torch.long)}
