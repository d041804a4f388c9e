"""Stage-1 data at scale: shards dealt to (rank, worker) slots, --split/--where on every data form, and
precompute's processes, decode workers, dtypes, flipped embeddings and empty folders."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from models.conftest import invoke
from imdd_models.cli import app
from imdd_models.data import iter_raw, iter_records, resolve
from imdd_models.data.count import samples_in
from imdd_models.data.sources import LATENT_MANIFEST
from imdd_models.data import stream as stream_module
from imdd_models.data.sources import shard_rows
from imdd_models.data.stream import ShardStream, StreamConfig, consumed_positions
from imdd_models.diffusion.precompute import _write_shard

ROOT = Path(__file__).resolve().parents[2]


def _key(row: dict, epoch: int) -> dict:
    return {"key": row["key"]}


def _latent_shards(folder: Path, sizes: list[int]) -> Path:
    """Latent shards written by precompute's writer: shard i holds sizes[i] rows (tiny latents)."""
    (folder / "latents").mkdir(parents=True)
    blob = np.zeros(4, np.float16).tobytes()
    for i, n in enumerate(sizes):
        _write_shard(folder / "latents" / f"all-{i:05d}.parquet",
                     [{"key": f"{i}/{r}", "caption": "", "latent": blob, "latent_shape": [1, 2, 2],
                       "image_embed": blob, "input_ids": [0] * 77, "split": ("train", "test")[r % 2]}
                      for r in range(n)])
    (folder / LATENT_MANIFEST).write_text(json.dumps({"samples": sum(sizes), "options": {"split": None}}))
    return folder


@pytest.mark.parametrize("shards, ranks, workers", [(7, 3, 1), (7, 1, 3), (2, 3, 1), (5, 2, 2), (2, 1, 3)])
def test_every_row_is_kept_once_per_epoch_and_shards_are_parsed_once(shards, ranks, workers, tmp_path, monkeypatch):
    sizes = [10 + i for i in range(shards)]  # uneven rows per shard too
    source = resolve(_latent_shards(tmp_path / "lat", sizes))
    read = Counter()

    def counted(shard):  # the rows the stream parses, counted outside it
        for row in shard_rows(shard):
            read["rows"] += 1
            yield row

    monkeypatch.setattr(stream_module, "shard_rows", counted)
    kept, parsed = Counter(), []
    for rank, worker in itertools.product(range(ranks), range(workers)):
        stream = ShardStream(source, StreamConfig(seed=3, shuffle_buffer=4, rank=rank, world_size=ranks), _key)
        wid = (worker + stream.config.worker_offset) % workers
        before = read["rows"]
        kept.update(row["key"] for row in stream.epoch_rows(0, rank * workers + wid, ranks * workers))
        parsed.append(read["rows"] - before)
    assert len(kept) == sum(sizes) and set(kept.values()) == {1}  # every row exactly once
    if shards >= ranks * workers:
        assert sum(parsed) == sum(sizes)  # each shard parsed by exactly one slot: parsed / kept = 1
    else:
        assert max(parsed) <= max(sizes)  # a slot parses the one shard it shares, not every shard


def test_a_sparse_filter_leaves_no_slot_without_rows(tmp_path):
    # 8 shards, the wanted rows in 2 of them: every slot still gets a share (the empty shards are not dealt out).
    folder = _latent_shards(tmp_path / "lat", [6] * 8)
    for i in range(2, 8):  # shards 2..7: train only
        path = folder / "latents" / f"all-{i:05d}.parquet"
        _write_shard(path, [{**row, "split": "train"} for row in pq.read_table(path).to_pylist()])
    source = resolve(folder)
    kept = Counter()
    for slot in range(3):
        stream = ShardStream(source, StreamConfig(shuffle_buffer=4, split="test"), _key)
        keys = [row["key"] for row in stream.epoch_rows(0, slot, 3)]
        assert keys, slot
        kept.update(keys)
        assert next(iter(stream))["key"]  # no "no samples" error
    assert len(kept) == 6 and set(kept.values()) == {1}


def test_shards_too_small_to_share_fall_back_to_rows_over_all_shards(tmp_path):
    # 2 shards, 3 slots: sharing the 1-row shard between 2 slots would leave one of them without rows.
    source = resolve(_latent_shards(tmp_path / "lat", [1, 9]))
    for epoch in range(3):
        parts = [[r["key"] for r in ShardStream(source, StreamConfig(shuffle_buffer=4, shuffle_shards=epoch > 0),
                                                _key).epoch_rows(epoch, s, 3)]
                 for s in range(3)]
        assert all(parts) and sorted(itertools.chain(*parts)) == sorted(["0/0"] + [f"1/{r}" for r in range(9)])


def test_dataloader_workers_with_uneven_shards_resume_exactly(tmp_path):
    source = resolve(_latent_shards(tmp_path / "lat", [5, 6, 7, 8, 9, 10, 11]))  # 7 shards, 3 workers

    def loader(**kw):
        return DataLoader(ShardStream(source, StreamConfig(seed=1, shuffle_buffer=4, **kw), _key), batch_size=4,
                          num_workers=3)

    reference, positions, next_worker = [], {}, 0
    for i, batch in enumerate(itertools.islice(loader(), 45)):
        reference.append((list(batch["key"]), batch["_pos"][:, 1].tolist()))
        if i < 7:
            consumed_positions(batch["_pos"], positions)
            next_worker = (int(batch["_pos"][0, 0]) + 1) % 3
    epoch0 = [k for keys, epochs in reference for k, e in zip(keys, epochs) if e == 0]
    assert sorted(epoch0) == sorted(f"{i}/{r}" for i in range(7) for r in range(5 + i))
    resumed = loader(start=positions, worker_offset=next_worker)
    assert [list(b["key"]) for b in itertools.islice(resumed, 10)] == [keys for keys, _ in reference[7:17]]


# --split / --where on every data form ---------------------------------------------------------------------

def _epoch_keys(source, split=None, where=None) -> list[str]:
    stream = ShardStream(source, StreamConfig(shuffle_buffer=4, split=split, where=where), _key)
    return [row["key"] for row in stream.epoch_rows(0, 0, 1)]


def _check_splits(spec, **kw) -> None:
    """18 train and 24 test demo records, whatever form `spec` has; `all` and no --split mean all 42."""
    for split, n in (("train", 18), ("test", 24), ("all", 42), (None, 42)):
        source = resolve(spec, split, **kw)
        keys = _epoch_keys(source, split)
        assert len(keys) == len(set(keys)) == n, (spec, split, len(keys))
        assert sum(1 for _ in iter_raw(source, split=split)) == n
        assert samples_in(source, split) in (n, None)
    source = resolve(spec, "test", **kw)
    defective = _epoch_keys(source, "test", "label=defective")
    assert len(defective) == 18 and samples_in(source, "test", "label=defective") in (18, None)


def test_split_on_latents_precomputed_without_split(demo_latents, demo_shards, tiny_components, tmp_path):
    # The README recipe: precompute everything, then train on one split (this failed: no samples in latents).
    _check_splits(demo_latents)
    normal_train = sum(1 for _ in iter_raw(demo_shards, split="train", where="label=normal"))
    assert samples_in(resolve(demo_latents, "train"), "train", "label=normal") == normal_train
    summary = invoke(app, "train-diffusion", "--config", "tiny", "--data", str(demo_latents), "--components",
                     str(tiny_components), "--out", str(tmp_path / "run"), "--split", "train", "--max-steps", "1")
    assert summary["steps_per_epoch"] == 18 // 4
    none = invoke(app, "train-diffusion", "--config", "tiny", "--data", str(demo_latents), "--components",
                  str(tiny_components), "--out", str(tmp_path / "none"), "--split", "validation", expect=2)
    assert "no split 'validation'" in none["error"] and "splits there: test, train" in none["error"]
    assert not (tmp_path / "none").exists()


def test_where_on_latents_reads_every_record_field(demo_latents, demo_shards):
    # Fields without a column of their own (defect_types, attributes.*) come from the latent row's `fields`.
    want = {r["key"] for r in iter_records(demo_shards, where="defect_types=scratch")}
    assert want and set(_epoch_keys(resolve(demo_latents), where="defect_types=scratch")) == want
    assert samples_in(resolve(demo_latents), None, "defect_types=scratch") == len(want)


def test_split_on_parquet_shards(demo_shards, tmp_path):
    _check_splits(demo_shards, fmt="parquet")
    # Shards whose names say no split (one file holding both): the rows' split field decides.
    mixed = tmp_path / "mixed"
    (mixed / "data").mkdir(parents=True)
    tables = [pq.read_table(p) for p in sorted((demo_shards / "data").glob("*.parquet"))]
    pq.write_table(pa.concat_tables(tables), mixed / "data" / "part-00000.parquet")
    _check_splits(mixed)


def test_split_on_webdataset_shards(demo_shards):
    _check_splits(demo_shards, fmt="webdataset")
    tars = " ".join(str(p) for p in sorted((demo_shards / "webdataset").glob("*.tar")))
    _check_splits(tars)


def test_split_on_a_datasets_folder(demo_shards, tmp_path):
    # A `datasets.load_dataset` folder published as one split that holds every record: --split test and
    # --split all read it (asking `datasets` for a "test" or "all" split failed).
    one = tmp_path / "one-split"
    one.mkdir()
    tables = [pq.read_table(p) for p in sorted((demo_shards / "data").glob("*.parquet"))]
    pq.write_table(pa.concat_tables(tables), one / "records.parquet")
    assert {s.kind for s in resolve(one).shards} == {"hub"}
    _check_splits(one)
    # ... and one with a split per file: each --split reads its own, no --split and `all` read both.
    per_split = tmp_path / "per-split"
    per_split.mkdir()
    for p in (demo_shards / "data").glob("*.parquet"):
        shutil.copy(p, per_split / p.name)
    _check_splits(per_split)
    assert {s.split for s in resolve(per_split, "train").shards} == {"train"}


# precompute ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("what", ["readme", "raw images", "empty"])
def test_precompute_on_a_folder_without_shards_names_what_it_found(what, tiny_components, tmp_path):
    data = tmp_path / "download"
    data.mkdir()
    if what == "readme":
        (data / "README.md").write_text("# a dataset card and nothing else\n")
    elif what == "raw images":  # a raw download: images, no shards (datasets would read it as an imagefolder)
        (data / "MT_Crack").mkdir()
        from PIL import Image
        for i in range(3):
            Image.new("RGB", (16, 16), (i, 0, 0)).save(data / "MT_Crack" / f"exp{i}.jpg")
    result = invoke(app, "precompute", "--data", str(data), "--components", str(tiny_components),
                    "--out", str(tmp_path / "out"), expect=2)
    assert "no shards" in result["error"] and str(data) in result["error"]
    assert {"readme": "README.md", "raw images": "3 .jpg", "empty": "empty"}[what] in result["error"]
    assert not (tmp_path / "out").exists()


def test_precompute_with_nothing_selected_is_an_error(demo_shards, tiny_components, tmp_path):
    result = invoke(app, "precompute", "--data", str(demo_shards), "--components", str(tiny_components),
                    "--out", str(tmp_path / "out"), "--where", "source=nowhere", expect=2)
    assert "no records match --where source=nowhere" in result["error"]
    assert not (tmp_path / "out").exists()


def test_flipped_rows_hold_the_flipped_images_embedding(demo_latents, demo_shards, tiny_components):
    from PIL import Image

    from imdd_models.components import load_components
    from imdd_models.diffusion.batches import LatentTransform
    comps = load_components(tiny_components)
    records = {r["key"]: r for r in iter_records(demo_shards)}
    rows = pq.read_table(sorted((demo_latents / "latents").glob("*.parquet"))[0]).to_pylist()[:4]
    images = [records[r["key"]]["image"] for r in rows]
    flipped = comps.image_embeds([im.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT) for im in images])
    plain = comps.image_embeds(images)
    for i, row in enumerate(rows):
        stored = torch.from_numpy(np.frombuffer(row["image_embed_flip"], np.float16).astype(np.float32))
        assert torch.equal(stored, flipped[i].half().float())
        assert not torch.equal(stored, plain[i].half().float())
    # training takes the flipped embedding together with the flipped latent
    transform = LatentTransform(seed=0, flip=True)
    flips = [e for e in range(20) if transform(rows[0], e)["latents"].flatten()[0]
             == torch.from_numpy(np.frombuffer(rows[0]["latent_flip"], np.float16).astype(np.float32))[0]]
    sample = transform(rows[0], flips[0])
    assert torch.equal(sample["image_embeds"], torch.from_numpy(
        np.frombuffer(rows[0]["image_embed_flip"], np.float16).astype(np.float32)))


def _rows_by_key(folder: Path) -> dict[str, dict]:
    return {r["key"]: r for p in sorted((folder / "latents").glob("*.parquet")) for r in pq.read_table(p).to_pylist()}


def test_decode_workers_give_the_same_bytes_and_bf16_encodes_close(demo_shards, tiny_components, demo_latents,
                                                                   tmp_path):
    from imdd_models.diffusion.precompute import precompute
    workers = precompute(str(demo_shards), tiny_components, tmp_path / "w2", shard_size=8, batch_size=8, flip=True,
                         workers=2)
    assert workers["workers"] == 2 and workers["samples"] == 42
    for path in sorted((demo_latents / "latents").glob("*.parquet")):
        assert (tmp_path / "w2" / "latents" / path.name).read_bytes() == path.read_bytes()

    summary = invoke(app, "precompute", "--data", str(demo_shards), "--components", str(tiny_components), "--out",
                     str(tmp_path / "bf16"), "--split", "train", "--dtype", "bf16", "--workers", "0")
    assert summary["dtype"] == "bf16" and summary["samples"] == 18
    assert json.loads((tmp_path / "bf16" / LATENT_MANIFEST).read_text())["options"]["dtype"] == "bf16"
    full, low = _rows_by_key(demo_latents), _rows_by_key(tmp_path / "bf16")
    for key, row in low.items():
        a, b = (torch.from_numpy(np.frombuffer(r["latent"], np.float16).astype(np.float32)) for r in (full[key], row))
        assert not torch.equal(a, b) and torch.allclose(a, b, atol=0.05, rtol=0.05), key
    refused = invoke(app, "precompute", "--data", str(demo_shards), "--components", str(tiny_components), "--out",
                     str(tmp_path / "bf16"), "--split", "train", "--dtype", "fp32", expect=2)
    assert "other options" in refused["error"]


def test_two_processes_each_write_their_own_shards(demo_shards, tiny_components, demo_latents, tmp_path):
    out = tmp_path / "two"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
           "-m", "imdd_models", "precompute", "--data", str(demo_shards), "--components", str(tiny_components),
           "--out", str(out), "--shard-size", "8", "--batch-size", "8", "--flip", "--workers", "0", "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["processes"] == 2 and summary["samples"] == 42 and summary["splits"] == {"train": 18, "test": 24}
    names = sorted(p.name for p in (out / "latents").glob("*.parquet"))
    assert {n.split("-")[1] for n in names} == {"000", "001"}  # each process its own shards
    manifest = json.loads((out / LATENT_MANIFEST).read_text())
    assert manifest["complete"] and manifest["samples"] == 42 and len(manifest["progress_by_process"]) == 2
    one, two = _rows_by_key(demo_latents), _rows_by_key(out)
    assert one.keys() == two.keys()  # every record once
    for key in one:
        a, b = (torch.from_numpy(np.frombuffer(r["latent"], np.float16).astype(np.float32)) for r in (one[key], two[key]))
        assert torch.allclose(a, b, atol=1e-3) and one[key]["image_embed_flip"] is not None
    assert len(_epoch_keys(resolve(out, "train"), "train")) == 18
