"""The one reader of IMDD shards (`imdd-build shard` folders, WebDataset tar URLs, Hub dataset ids of
either layout).

`iter_records(data, split=None, where=None)` yields one dict per sample, in shard order:
    key (str), image (PIL.Image, as stored: 512x512, "RGB" or "L"), mask (PIL "L" or None), class_mask
    (PIL "L", 0 background, k = 1 + index into defect_types, or None), caption (str),
    and every other field the shard carries: split, source, domain, product, label, defect_types,
    defect_labels, boxes [{label, x0, y0, x1, y1}], has_mask, has_class_mask, attributes {...}, geometry {...},
    caption_source, caption_status, caption_meta (dict), source_attributes (dict), license, ...
Bad samples (undecodable pixels) are skipped and counted in a `ReadStats`; `split` keeps the rows whose own
`split` field says it (no split and `all`: every split; file names only narrow which shards are opened);
`where` filters on any field (`source=demo,label=defective,split=test`, see `where.py`), on latent shards too. `iter_raw` gives the same rows with the pixels
still encoded (`image_bytes`, `mask_bytes`, `class_mask_bytes`). `resolve(data)` lists the shards; a folder written by
`imdd-models precompute` resolves to latent shards (kind "latents") that training reads instead.
Training streams through `imdd_models.data.stream` (shard shuffle, shuffle buffer, shards dealt to
(rank, worker) slots); `count.samples_in(source, split, where)` is its steps-per-epoch count.
"""

from .records import BadSample, ReadStats, decode_record, iter_raw, iter_records
from .sources import DataSource, Shard, resolve, shard_rows
from .where import matches, parse_where

__all__ = ["BadSample", "DataSource", "ReadStats", "Shard", "decode_record", "iter_raw", "iter_records",
           "matches", "parse_where", "resolve", "shard_rows"]
