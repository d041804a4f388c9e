"""The training stream: endless, shuffled, split across ranks and DataLoader workers, resumable exactly.

Per epoch `e` (seeded by `seed` and `e`): the shards are shuffled, then dealt to the (rank, worker)
*slots* (`slot = rank * workers + worker`) by `slot_parts`: with at least as many shards as slots, slot `s`
reads shards `s, s + slots, ...` whole (uneven counts allowed: some slots read one shard more), so every shard
is parsed by exactly one slot per epoch; with fewer shards than slots, shard `s % shards` is read by the
slots that share it, each keeping every k-th of its (filtered) rows, so a slot parses one shard instead of all
(webdataset's node/worker split). The last resort, where sharing shard by shard would leave a slot without
rows (known from local shards' metadata), is the row-level split: every slot parses every shard and keeps
1 in N. Under --split/--where, shards with no wanted row (per metadata) are not dealt out. Slots see disjoint
samples and every row is kept exactly once per epoch. Rows pass a seeded shuffle buffer, then the sample transform (decoding).
A slot whose rows run out starts the next epoch, so every rank yields a batch at every step and DDP ranks
stay in step; an epoch is `samples // (world_size * batch_size)` steps for every rank.

Bad samples (the transform raises BadSample) are skipped; each yielded sample carries how many were
skipped before it (`_bad`) and its position (`_pos` = worker, epoch, index in the slot's shuffled order);
a slot whose every sample of a whole epoch is bad stops with a RunError instead of spinning forever.
Resuming from the positions of the last consumed samples replays the same order and skips rows
without decoding them, so a resumed run sees exactly the samples an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import IterableDataset, get_worker_info

from imdd_build.errors import RunError

from .count import row_counts, shard_counts
from .records import BadSample
from .sources import DataSource, shard_rows, wanted_split
from .where import parse_where, selected


def seeded(*parts) -> int:
    """A stable 64-bit seed from any parts (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


@dataclass
class StreamConfig:
    seed: int = 0
    shuffle_buffer: int = 1000
    shuffle_shards: bool = True
    rank: int = 0
    world_size: int = 1
    split: str | None = None
    where: str | None = None
    start: dict = field(default_factory=dict)  # worker id -> (epoch, index of the last consumed sample)
    # DataLoader hands out batches from its workers round-robin starting at worker 0; after a resume the
    # worker that was next must come first, so physical worker w plays logical worker (w + offset) % workers.
    worker_offset: int = 0


def slot_parts(shards: int, slot: int, slots: int) -> list[tuple[int, int, int]]:
    """What slot `slot` of `slots` reads of `shards` shards: (shard index, every, offset) parts, keeping the
    shard's rows `j` (counted after --split/--where) with `j % every == offset`.

    shards >= slots: shards slot, slot + slots, ... whole (every = 1); each shard goes to exactly one slot.
    shards < slots: shard `slot % shards`, shared by the slots congruent to it, each keeping every k-th row."""
    if shards <= 0:
        return []
    if shards >= slots:
        return [(i, 1, 0) for i in range(slot, shards, slots)]
    index = slot % shards
    return [(index, len(range(index, slots, shards)), slot // shards)]


def shuffle_buffer(rows: Iterator, size: int, rng: random.Random) -> Iterator:
    """A streaming shuffle: keep `size` rows, emit a random one as each new row arrives."""
    buffer = []
    for row in rows:
        if len(buffer) < size:
            buffer.append(row)
            continue
        j = rng.randrange(size)
        buffer[j], row = row, buffer[j]
        yield row
    rng.shuffle(buffer)
    yield from buffer


class ShardStream(IterableDataset):
    """Endless per-slot sample stream over a DataSource; `transform(raw_row, epoch)` makes a sample."""

    def __init__(self, source: DataSource, config: StreamConfig, transform: Callable[[dict, int], dict]):
        self.source = source
        self.config = config
        self.transform = transform
        self.terms = parse_where(config.where)
        self.rows_parsed = 0  # raw rows read by this process's copy (bench/loader.py)
        self.shards, self.counts = self._shards_with_rows()

    def _shards_with_rows(self) -> tuple[list, dict | None]:
        """The shards to deal out and their wanted rows ({location: count}, None where unknown): under
        --split/--where, only those holding any wanted row where metadata says so cheaply (local Parquet and
        latent shards), so that a sparse filter (one source among many shards) leaves no slot with only
        empty shards."""
        shards = list(self.source.shards)
        if wanted_split(self.config.split) is None and not self.terms:
            counts = row_counts(shards)
        else:
            counts = shard_counts(shards, self.config.split, self.config.where)
        if counts is None:
            return shards, None
        kept = [(s, n) for s, n in zip(shards, counts) if n]
        return [s for s, _ in kept], {s.location: n for s, n in kept}

    def _row_level(self, shards: list, slots: int) -> bool:
        """Whether to split rows over all shards (every slot parses every shard and keeps 1 in `slots`, the
        last resort): only with fewer shards than slots, when sharing them shard by shard would leave a slot
        without rows (a shard with fewer wanted rows than the slots that share it)."""
        if len(shards) >= slots or self.counts is None:
            return False
        return any(self.counts[shard.location] < len(range(i, slots, len(shards))) for i, shard in enumerate(shards))

    def slot(self, worker: int, workers: int) -> tuple[int, int, int]:
        """(logical worker, slot, slots) of DataLoader worker `worker` of `workers` on this rank."""
        wid = (worker + self.config.worker_offset) % workers
        return wid, self.config.rank * workers + wid, self.config.world_size * workers

    def _slot(self) -> tuple[int, int, int]:
        info = get_worker_info()
        return self.slot(*((info.id, info.num_workers) if info else (0, 1)))

    def _wanted(self, row: dict) -> bool:
        return selected(row, self.config.split, self.terms)

    def parts(self, shards: list, slot: int, slots: int) -> list[tuple[object, int, int]]:
        """(shard, every, offset) this slot reads of an epoch's shuffled shards (see `slot_parts`)."""
        return [(shards[i], every, offset) for i, every, offset in slot_parts(len(shards), slot, slots)]

    def epoch_rows(self, epoch: int, slot: int, slots: int) -> Iterator[dict]:
        """This slot's raw rows of one epoch, shuffled (shards, then the buffer), nothing decoded."""
        shards = list(self.shards)
        if self.config.shuffle_shards:
            random.Random(seeded(self.config.seed, "shards", epoch)).shuffle(shards)
        row_level = self._row_level(shards, slots)
        parts = [(shard, slots, slot) for shard in shards] if row_level else self.parts(shards, slot, slots)

        def rows():
            index = 0
            for shard, every, offset in parts:
                index = index if row_level else 0  # row level: one count over all shards
                for row in shard_rows(shard):
                    self.rows_parsed += 1
                    if not self._wanted(row):
                        continue
                    if index % every == offset:
                        yield row
                    index += 1

        rng = random.Random(seeded(self.config.seed, "buffer", epoch, slot))
        return shuffle_buffer(rows(), max(1, self.config.shuffle_buffer), rng)

    def __iter__(self) -> Iterator[dict]:
        wid, slot, slots = self._slot()
        epoch, done = self.config.start.get(wid, (0, 0))
        bad = 0
        while True:
            seen = bad_here = 0
            first_bad = ""
            for index, row in enumerate(self.epoch_rows(epoch, slot, slots), start=1):
                seen = index
                if index <= done:
                    continue  # consumed before the resume: skip without decoding
                try:
                    sample = self.transform(row, epoch)
                except BadSample as exc:
                    bad, bad_here = bad + 1, bad_here + 1
                    first_bad = first_bad or str(exc)
                    continue
                sample["_pos"] = torch.tensor([wid, epoch, index])
                sample["_bad"] = torch.tensor(bad)
                bad = 0
                yield sample
            if seen == 0:
                raise RunError(f"rank {self.config.rank} worker {wid}: no samples in {self.source.spec} "
                               f"(split={self.config.split}, where={self.config.where})")
            if done == 0 and bad_here == seen:  # a whole epoch and not one usable sample: it would spin forever
                raise RunError(f"rank {self.config.rank} worker {wid}: all {seen} samples of {self.source.spec} "
                               f"are bad (first: {first_bad})")
            epoch, done = epoch + 1, 0


def consumed_positions(batch_pos: torch.Tensor, positions: dict) -> dict:
    """Update {worker: (epoch, index)} with a batch's `_pos` rows (one worker per batch)."""
    for wid, epoch, index in batch_pos.tolist():
        if (epoch, index) > tuple(positions.get(wid, (-1, -1))):
            positions[wid] = (epoch, index)
    return positions
