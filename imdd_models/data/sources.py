"""Where shards come from, and their rows undecoded.

A data source (`--data`) is one of:
- a shard folder written by `imdd-build shard` (Parquet `data/**.parquet`, else WebDataset `webdataset/**.tar`);
- a latent folder written by `imdd-models precompute` (`latents.json` + `latents/*.parquet`);
- WebDataset tar paths or URLs (`http(s)://`, `pipe:`, `file://`, brace patterns `train-{000000..000009}.tar`);
- a Hugging Face dataset id (or any path `datasets.load_dataset` understands), streamed.

`--split S` narrows the shards by what their names say (`train-00000.parquet`; names that say no split,
`all-*` latent shards among them, are kept) and, for a `datasets` id or folder, to its split S when it has
one (else every split); the rows' own `split` field then decides. No `--split` and `--split all` read
every split. A local folder with no shards and nothing `datasets` could read (a raw download of images, only
a readme) is a FileNotFoundError naming what it holds.

Every shard yields *raw rows*: dicts with `key`, `image_bytes`, `mask_bytes`, `class_mask_bytes`, `caption`
and the record's other fields (split, source, label, defect_types, boxes, has_mask, has_class_mask, attributes,
geometry, ...), pixels still encoded, so filtering and skipping cost no decoding. A WebDataset sample's all-zero
stand-in `mask.png` / `class_mask.png` (written where the record has none, `has_mask` / `has_class_mask` false)
is read as no mask, so both formats give the same rows.

A `datasets`-loadable id or folder that holds only WebDataset tars loads through `datasets`' `webdataset`
builder, whose rows are the members by extension (`jpg`/`png`, `mask.png`, `class_mask.png`, `json`, `txt`,
`__key__`, `__url__`); they become the same raw rows as the tars read directly (`sample_row`). One known
difference: `datasets` encodes the `.json` with pandas' ujson, which keeps 10 decimal places of a float
(`1.4233333333` for `1.4233333333333333`, `1e-10` for `5e-11`). The reader takes the `.json` as `Json` text
even where `datasets` inferred a struct, which would be exact but drops keys the tar's first 5 samples lack.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from imdd_build.errors import RunError

from ..jsonfile import read_json

LATENT_MANIFEST = "latents.json"
_SPLIT_RE = re.compile(r"^([a-z]+)-\d+")
_IMAGE_EXTS = ("png", "jpg", "jpeg", "webp")
_JSON_COLUMNS = ("caption_meta", "source_attributes")
_URL_RE = re.compile(r"^[a-z][a-z0-9+.-]*:")


ALL = "all"  # `--split all`: every split, as no --split


def wanted_split(split: str | None) -> str | None:
    """The split rows must carry: None for no `--split` and for `--split all` (every split)."""
    return None if split in (None, "", ALL) else split


def by_split(shards: list[Shard], split: str | None) -> list[Shard]:
    """The shards that may hold rows of `split`, by what their names say: those named for it and those whose
    name says no split (mixed, `all-*`). When no name says `split` (names that are no split, such as
    `part-00000`), every shard: the rows' own `split` field decides (as it always does, after this)."""
    split = wanted_split(split)
    if split is None or split not in {s.split for s in shards}:
        return list(shards)
    return [s for s in shards if s.split in (None, split)]


@dataclass(frozen=True)
class Shard:
    """One unit of reading: a file, a URL, or shard `index` of a streamed Hub dataset."""

    kind: str  # parquet | webdataset | hub | latents
    location: str
    split: str | None = None
    index: int = 0
    count: int = 1


@dataclass
class DataSource:
    """The resolved `--data`: what it holds (`images` or `latents`) and its shards in a fixed order."""

    spec: str
    kind: str
    shards: list[Shard]
    manifest: dict | None = None


def _split_of(path: Path) -> str | None:
    """The split a shard's file name says (`train-00000.parquet`); None when it says none, or `all` (mixed:
    `precompute` without --split writes `all-*` shards holding every split)."""
    m = _SPLIT_RE.match(path.name)
    return m.group(1) if m and m.group(1) != ALL else None


def _found(root: Path) -> str:
    """What a folder holds, for an error message: its first entries, and its files counted by extension."""
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    if not entries:
        return "it is empty"
    shown = ", ".join(entries[:6]) + (f", ... ({len(entries)} entries)" if len(entries) > 6 else "")
    kinds: dict[str, int] = {}
    for i, path in enumerate(root.rglob("*")):
        if i >= 100_000:
            break
        if path.is_file():
            kinds[path.suffix or path.name] = kinds.get(path.suffix or path.name, 0) + 1
    files = ", ".join(f"{n} {ext}" for ext, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:5])
    return f"it holds {shown}" + (f" (files: {files})" if files else "")


def _datasets_loadable(root: Path) -> bool:
    """Whether a folder has files `datasets.load_dataset` could read as IMDD rows (Parquet, tars, Arrow, a
    loading script): a raw download of images, or a folder with only a readme, is not a shard folder."""
    exts = (".parquet", ".tar", ".arrow")
    return any(p.suffix in exts or p.name.endswith(".py") for p in root.rglob("*") if p.is_file())


def _local_shards(root: Path, split: str | None, fmt: str | None) -> DataSource:
    if (root / LATENT_MANIFEST).is_file():
        manifest = read_json(root / LATENT_MANIFEST)
        files = sorted((root / "latents").glob("*.parquet"))
        shards = [Shard("latents", str(f), _split_of(f)) for f in files]
        return DataSource(str(root), "latents", by_split(shards, split), manifest)
    parquet = sorted((root / "data").rglob("*.parquet")) if (root / "data").is_dir() else []
    tars = sorted((root / "webdataset").rglob("*.tar")) if (root / "webdataset").is_dir() else []
    if fmt == "webdataset" or (not parquet and fmt != "parquet"):
        shards = [Shard("webdataset", str(f), _split_of(f)) for f in tars]
    else:
        shards = [Shard("parquet", str(f), _split_of(f)) for f in parquet]
    expected = f"expected data/*.parquet, webdataset/*.tar or {LATENT_MANIFEST} (imdd-build shard / precompute)"
    if not shards:
        if not _datasets_loadable(root):
            raise FileNotFoundError(f"{root}: no shards ({expected}); {_found(root)}")
        try:  # another layout `datasets.load_dataset` understands (e.g. tars at the top, a Hub snapshot)
            return _hub_shards(str(root), split)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{root}: no shards ({expected}); {_found(root)}; datasets: {exc}") from None
    return DataSource(str(root), "images", by_split(shards, split))


def _tar_shards(spec: str, split: str | None) -> DataSource:
    import braceexpand
    urls = [u for part in spec.split() for u in braceexpand.braceexpand(part)]
    shards = [Shard("webdataset", u, _split_of(Path(u.rsplit("/", 1)[-1]))) for u in urls]
    return DataSource(spec, "images", by_split(shards, split))


def _hub_shards(spec: str, split: str | None) -> DataSource:
    """The shards of a `datasets`-loadable id or folder: those of the dataset split named `split` when it has
    one, else of every split (rows are then filtered on their own `split` field, so a dataset published as one
    split still gives `--split test`); no `--split` and `--split all` read every split."""
    import datasets
    try:
        splits = datasets.load_dataset(spec, streaming=True)
    except Exception as exc:  # noqa: BLE001  (network, missing repo, bad config: one message)
        raise FileNotFoundError(f"{spec}: not a shard folder, tar URL or loadable dataset ({exc})") from None
    wanted = wanted_split(split)
    names = [wanted] if wanted in splits else list(splits)
    for name in names:
        features = splits[name].features
        if features is not None and "image" not in features and not _is_webdataset(features):
            raise RunError(f"{spec}: split {name!r} has columns {', '.join(features)}; expected IMDD rows "
                           "(an image column, or WebDataset members json + png/jpg)")
    return DataSource(spec, "images", [Shard("hub", spec, name, i, splits[name].num_shards)
                                       for name in names for i in range(splits[name].num_shards)])


def resolve(spec: str | Path, split: str | None = None, fmt: str | None = None) -> DataSource:
    """Resolve `--data` into its shards (filtered to `split` where file names say it)."""
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        return _local_shards(path, split, fmt)
    if text.endswith(".parquet") and path.is_file():
        return DataSource(text, "images", [Shard("parquet", text, _split_of(path))])
    if ".tar" in text and (_URL_RE.match(text) or "{" in text or path.is_file() or " " in text):
        return _tar_shards(text, split)
    return _hub_shards(text, split)


def data_spec(data) -> str | None:
    """A `--data` value as recorded and compared: a local folder or file resolved (the same shards however the
    path is spelled: relative, `./`, a trailing slash), anything else (tar URLs, Hub ids) as given."""
    if data is None:
        return None
    return str(Path(data).resolve()) if Path(str(data)).exists() else str(data)


def normalize_row(row: dict) -> dict:
    """A Parquet/Hub row as a raw row: image/mask/class_mask bytes lifted out, JSON columns parsed."""
    for col in ("image", "mask", "class_mask"):
        value = row.pop(col, None)
        row[f"{col}_bytes"] = value.get("bytes") if isinstance(value, dict) else value
    for col in _JSON_COLUMNS:
        if isinstance(row.get(col), str):
            try:
                row[col] = json.loads(row[col])
            except ValueError:
                pass
    return row


@contextmanager
def parquet_errors(path):
    """Reading a Parquet shard: a truncated or corrupt file (a copy cut short, a download that failed) is one
    RunError naming it, not pyarrow's ArrowInvalid traceback. A missing file stays FileNotFoundError."""
    try:
        yield
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise RunError(f"{path}: not a readable Parquet shard ({reason})") from None


def _parquet_rows(path: str) -> Iterator[dict]:
    with parquet_errors(path):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
            for row in batch.to_pylist():
                yield row if "latent" in row else normalize_row(row)


def _tar_groups(stream) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Members of a WebDataset tar grouped by sample key, in order (key = name up to the basename's first dot)."""
    current, members = None, {}
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for info in tar:
            if not info.isfile():
                continue
            base = info.name.rsplit("/", 1)
            stem, dot, ext = base[-1].partition(".")
            key = (base[0] + "/" + stem) if len(base) == 2 else stem
            if key != current and current is not None:
                yield current, members
                members = {}
            current = key
            members[ext] = tar.extractfile(info).read()
    if current is not None:
        yield current, members


def _member_bytes(value) -> bytes | None:
    """A member's bytes: as read from a tar, or a `datasets` Image(decode=False) value {"bytes", "path"}."""
    return value.get("bytes") if isinstance(value, dict) else value


def sample_row(key: str, members: dict) -> dict:
    """One WebDataset sample as a raw row, from its members by extension (`jpg`/`png`, `mask.png`,
    `class_mask.png`, `json`, `txt`).

    Members are either a tar's bytes, or what `datasets`' webdataset builder makes of them (the `.json` as a
    JSON string or dict, the `.txt` as a str, images as {"bytes", "path"}, absent ones as None)."""
    meta = members.get("json")
    meta = json.loads(meta) if isinstance(meta, (bytes, str)) else (meta or {})
    row = {**meta, "key": meta.get("key", key)}
    ext = next((e for e in _IMAGE_EXTS if members.get(e) is not None), None)
    row["image_bytes"] = _member_bytes(members[ext]) if ext else None
    # Every sample has both mask members; the .json's has_* flags say which are real.
    row["mask_bytes"] = _member_bytes(members.get("mask.png")) if meta.get("has_mask", True) is not False else None
    row["class_mask_bytes"] = (_member_bytes(members.get("class_mask.png"))
                               if meta.get("has_class_mask", True) is not False else None)
    text = members.get("txt")
    if text is not None:
        row["caption"] = text.decode("utf-8") if isinstance(text, bytes) else text
    return row


def _webdataset_rows(location: str) -> Iterator[dict]:
    from webdataset.gopen import gopen
    stream = open(location, "rb") if Path(location).is_file() else gopen(location, "rb")
    with stream:
        for key, members in _tar_groups(stream):
            yield sample_row(key, members)


def _is_webdataset(features) -> bool:
    """Whether `datasets` loaded WebDataset tars: a `json` member and an image member as columns."""
    return "json" in features and any(ext in features for ext in _IMAGE_EXTS)


def _hub_rows(shard: Shard) -> Iterator[dict]:
    import datasets
    ds = datasets.load_dataset(shard.location, split=shard.split, streaming=True)
    features = datasets.Features(ds.features or {})
    webdataset = _is_webdataset(features)
    for col, feature in features.items():
        if col in ("image", "mask", "class_mask") or isinstance(feature, datasets.Image):
            features[col] = datasets.Image(decode=False)  # the stored bytes, decoded (or skipped) later
    if webdataset:
        # The .json as JSON text, parsed by sample_row: a struct inferred from a tar's first samples (no
        # README features) would drop keys first seen later; Json's own decoding parses floats imprecisely.
        features["json"] = datasets.Json(decode=False)
    if ds.features and features != ds.features:
        ds = ds.cast(features)
    if shard.count > 1:
        ds = ds.shard(num_shards=shard.count, index=shard.index)
    for row in ds:
        yield sample_row(row.get("__key__") or "", row) if webdataset else normalize_row(dict(row))


def shard_rows(shard: Shard) -> Iterator[dict]:
    """The raw rows of one shard, in file order."""
    if shard.kind in ("parquet", "latents"):
        return _parquet_rows(shard.location)
    if shard.kind == "webdataset":
        return _webdataset_rows(shard.location)
    return _hub_rows(shard)
