"""The training stream: disjoint ranks and workers, deterministic shuffling, exact positions, bad samples."""

from __future__ import annotations

import itertools
import shutil

import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from imdd_build.errors import RunError
from imdd_models.data import ReadStats, decode_record, iter_records, resolve
from imdd_models.data.stream import ShardStream, StreamConfig, consumed_positions


def _keys(row: dict, epoch: int) -> dict:
    return {"key": row["key"]}


def _decoded(row: dict, epoch: int) -> dict:
    return {"key": decode_record(row)["key"]}


def _stream(source, **kw) -> ShardStream:
    return ShardStream(source, StreamConfig(shuffle_buffer=8, **kw), _keys)


def test_slots_of_an_epoch_are_disjoint_and_cover_everything(demo_shards, demo_latents):
    for spec in (demo_shards, demo_latents):  # 2 image shards (split by row) and 6 latent shards (by shard)
        source = resolve(spec)
        everything = [r["key"] for r in _stream(source).epoch_rows(0, 0, 1)]
        assert len(everything) == len(set(everything)) == 42
        for slots in (2, 3, 4):
            parts = [[r["key"] for r in _stream(source).epoch_rows(0, s, slots)] for s in range(slots)]
            assert sum(map(len, parts)) == 42 and set(itertools.chain(*parts)) == set(everything)


def test_order_is_seeded_and_changes_per_epoch(demo_latents):
    source = resolve(demo_latents)
    first = [r["key"] for r in _stream(source, seed=1).epoch_rows(0, 0, 1)]
    assert first == [r["key"] for r in _stream(source, seed=1).epoch_rows(0, 0, 1)]
    assert first != [r["key"] for r in _stream(source, seed=1).epoch_rows(1, 0, 1)]
    assert first != [r["key"] for r in _stream(source, seed=2).epoch_rows(0, 0, 1)]


def test_dataloader_workers_split_and_the_stream_never_ends(demo_latents):
    loader = DataLoader(_stream(resolve(demo_latents), rank=1, world_size=2), batch_size=3, num_workers=2)
    samples = []
    for batch in itertools.islice(loader, 20):  # 60 samples: more than this rank's 21 per epoch
        samples += [(int(w), int(e), k) for (w, e, _), k in zip(batch["_pos"].tolist(), batch["key"])]
    assert {w for w, _, _ in samples} == {0, 1} and max(e for _, e, _ in samples) >= 1
    epoch0 = [k for _, e, k in samples if e == 0]
    assert len(epoch0) == len(set(epoch0))
    other_rank = {r["key"] for s in (0, 1) for r in _stream(resolve(demo_latents)).epoch_rows(0, s, 4)}
    assert not set(epoch0) & other_rank  # rank 1's workers are slots 2 and 3


def test_resuming_from_positions_continues_the_same_sequence(demo_latents):
    source = resolve(demo_latents)
    loader = DataLoader(_stream(source), batch_size=4)
    reference, positions = [], {}
    for i, batch in enumerate(itertools.islice(loader, 16)):
        reference.append(list(batch["key"]))
        if i < 7:
            consumed_positions(batch["_pos"], positions)
    resumed = DataLoader(ShardStream(source, StreamConfig(shuffle_buffer=8, start=positions), _keys), batch_size=4)
    assert [list(b["key"]) for b in itertools.islice(resumed, 9)] == reference[7:]


def _train_shards_with(demo_shards, folder, spoil) -> list[dict]:
    """A copy of the demo Parquet shards whose train rows went through `spoil(rows)`; the rows."""
    import pyarrow as pa
    shutil.copytree(demo_shards / "data", folder / "data")
    path = next((folder / "data").glob("train-*.parquet"))
    table = pq.read_table(path).to_pylist()
    spoil(table)
    pq.write_table(pa.Table.from_pylist(table, schema=pq.read_schema(path)), path)
    return table


def _break_two(table: list[dict]) -> None:
    table[1]["image"]["bytes"] = table[1]["image"]["bytes"][:100]  # truncated PNG
    table[4]["image"]["bytes"] = b"not an image"


def test_bad_samples_are_skipped_and_counted(demo_shards, tmp_path):
    folder = tmp_path / "shards"
    table = _train_shards_with(demo_shards, folder, _break_two)
    broken = [table[1]["key"], table[4]["key"]]

    stats = ReadStats()
    keys = [r["key"] for r in iter_records(folder, split="train", stats=stats)]
    assert stats.bad == 2 and len(keys) == 16 and not set(broken) & set(keys)
    assert all(any(k in reason for k in broken) for reason in stats.bad_examples)

    stream = ShardStream(resolve(folder, "train"), StreamConfig(shuffle_buffer=4, split="train"), _decoded)
    samples = list(itertools.islice(iter(stream), 16))
    assert sum(int(s["_bad"]) for s in samples) == 2 and not set(broken) & {s["key"] for s in samples}
    assert all(torch.is_tensor(s["_pos"]) for s in samples)


def test_split_and_where_filter_latents_like_images(demo_latents):
    source = resolve(demo_latents)
    defective = [r for r in _stream(source, where="label=defective").epoch_rows(0, 0, 1)]
    assert len(defective) == 18 and {r["label"] for r in defective} == {"defective"}
    assert len(list(_stream(source, split="train").epoch_rows(0, 0, 1))) == 18


def test_a_stream_whose_every_sample_is_bad_stops_with_an_error(demo_shards, tmp_path):
    # Skipping bad samples must not turn into an endless loop when nothing is usable.
    folder = tmp_path / "shards"
    _train_shards_with(demo_shards, folder, lambda table: [row["image"].update(bytes=b"not an image") for row in table])
    stream = ShardStream(resolve(folder, "train"), StreamConfig(shuffle_buffer=4, split="train"), _decoded)
    with pytest.raises(RunError, match=r"all 18 samples of .* are bad \(first: .*image does not decode"):
        next(iter(stream))
