"""`predict`: segment, detect and classify defects named in words, on shard records or image files.

Writes the predictions folder that `imdd-models evaluate` reads:
    OUT/predictions.jsonl   one object per image: key, image_score, label, defect_type, class_scores, boxes
                            (512x512 canvas), anomaly_map (maps/<name>.npy, float32 512x512), class_map
                            (maps/<name>.classes.png, uint8 512x512: 0 background, i >= 1 the i-th name of the
                            line's `class_names`) and class_names; `extra`: geometry and boxes_original
                            (original pixels) where the image's placement is known
    OUT/maps/               the .npy anomaly maps and class maps
    OUT/overlays/           <name>.png: the image with the anomaly map tinted and the boxes drawn, for people
    OUT/predict.json        the run's identity: the model (weights digest, step, trained classes) and options
    OUT/meta.json           the predictions' provenance, which evaluation reports copy: the same identity plus
                            `seen_classes`, `unseen_classes`, `split`, the ensemble used
Image files of any size are letterboxed onto the 512 canvas exactly as `imdd-build` does; overlays of image
files are drawn on the original image, with maps and boxes mapped back. A killed run resumes: keys already
in predictions.jsonl are skipped (a torn last line is dropped) and nothing is written twice. It resumes only
when the model (weights digest, step, classes) and every option match; a non-empty --out written by another
model or other options is refused unless `overwrite` (which clears it first).

Class names: any name works (that is the point of open vocabulary); names the model was trained on are
`seen_classes`, the others `unseen_classes`. A name within a small edit distance of a taxonomy term that is not
itself one (`scrach`) gets a warning naming the term. Names are classified by the learned classifier,
ensembled with the frozen CLIP classifier when the diffusion folder has one (clip_head.py).
"""

from __future__ import annotations

import collections
import hashlib
import io
import itertools
import json
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from imdd_build.errors import RunError
from imdd_build.geometry import mask_to_original
from imdd_build.normalize import NormalizeOptions, SampleError, normalize_image
from imdd_build.record import Geometry

from ..data import ReadStats, iter_records
from ..data.explain import no_records_message
from ..jsonfile import read_json
from . import checkpoint as ckpt
from .calibrate import resolve_threshold
from .clip_head import ClipClassifier, clip_unavailable, ensemble
from .config import saved_config
from .dataset import requested_names
from .features import DiffusionFeatureExtractor, parse_device, parse_dtype
from .model import MaskGenerator
from .postprocess import ImageResult, semantic_maps, semantic_maps_from_probs, summarize
from .text import TextEmbedder
from .vocabulary import canonical_type, near_miss

CANVAS = 512


@dataclass
class SegModel:
    """A trained mask generator with its frozen feature extractor and text embedder."""

    config: dict
    extractor: DiffusionFeatureExtractor
    model: MaskGenerator
    text: TextEmbedder
    clip: ClipClassifier | None = None
    clip_alpha: float = 0.35
    clip_beta: float = 0.65

    @property
    def trained_classes(self) -> list[str]:
        return list(self.config.get("classes") or [])

    def seen(self, name: str) -> bool:
        """Whether a name stands for a class the model was trained on (synonyms count)."""
        trained = set(self.trained_classes)
        return name in trained or (canonical_type(name) or name) in trained

    def clip_weights(self, classes: list[str]) -> torch.Tensor:
        return torch.tensor([self.clip_alpha if self.seen(c) else self.clip_beta for c in classes])

    @torch.no_grad()
    def maps(self, images: list[Image.Image], classes: list[str]) -> np.ndarray:
        """(B, K, 512, 512) class maps for canvases."""
        feats = self.extractor(images)
        out = self.model(feats, self.text(classes).to(self.extractor.device))
        masks, logits = out["masks"][-1], out["logits"][-1]
        if self.clip is None:
            return semantic_maps(masks, logits, CANVAS).cpu().numpy()
        clip_logits = self.clip.logits(self.clip.dense(images), masks, self.clip.names(classes))
        probs = ensemble(logits, clip_logits.to(logits.device), self.clip_weights(classes))
        return semantic_maps_from_probs(masks, probs, CANVAS).cpu().numpy()


def load_model(folder: Path, diffusion: Path | None = None, device: str | torch.device | None = None,
               use_clip: bool = True, clip_alpha: float | None = None, clip_beta: float | None = None,
               dtype: str | None = None, clip_text: Path | None = None) -> SegModel:
    """Load `train-seg`'s output folder; the diffusion folder recorded there unless `diffusion` is given.
    `device`/`dtype` as `--device`/`--dtype` (the frozen backbone's dtype; the trained head stays float32)."""
    config = ckpt.read_config(folder)
    feat = config["features"]
    try:
        device = parse_device(str(device) if device is not None else None)
        frozen_dtype = parse_dtype(dtype, device)
    except ValueError as exc:
        raise RunError(str(exc)) from None
    extractor = DiffusionFeatureExtractor.from_folder(diffusion or feat["diffusion"], feat["timestep"],
                                                      feat["noise_seed"], device, frozen_dtype)
    saved = [(t["name"], t["channels"], t["stride"]) for t in feat["taps"]]
    if saved != [(t.name, t.channels, t.stride) for t in extractor.taps]:
        raise RunError(f"{diffusion or feat['diffusion']}: its U-Net/VAE taps differ from the ones "
                       f"{folder} was trained on")
    text = TextEmbedder(extractor.text_encoder, extractor.tokenizer)
    cfg = saved_config(config["model"])
    model = MaskGenerator(cfg, extractor.taps, config["text_dim"])
    ckpt.load_weights(folder, model)
    root = Path(diffusion or feat["diffusion"])
    clip = None
    if use_clip and clip_unavailable(root, clip_text) is None:
        clip = ClipClassifier.from_folder(root, device, cfg["clip_logit_scale"], cfg["clip_input_scale"], clip_text)
    return SegModel(config, extractor, model.to(device).eval(), text, clip,
                    cfg["clip_alpha"] if clip_alpha is None else clip_alpha,
                    cfg["clip_beta"] if clip_beta is None else clip_beta)


def model_identity(folder: Path) -> dict:
    """What names a trained model: its weights' digest, its step and its trained classes (no weights loaded)."""
    folder = Path(folder)
    config = ckpt.read_config(folder)  # first: a torn seg_config.json is named before anything else
    weights = folder / ckpt.WEIGHTS
    if not weights.is_file():
        raise FileNotFoundError(f"{folder}: {ckpt.WEIGHTS} missing")
    digest = hashlib.sha256()
    with open(weights, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    step = (config.get("selected") or {}).get("step")  # train-seg --eval-every: the best held-out step
    trainer = ((folder / ckpt.STATE_DIR / "trainer.json", "step"), (folder / "train_summary.json", "steps"))
    path, key = next(((p, k) for p, k in trainer if p.is_file()), (None, None))
    if step is None and path is not None:
        step = read_json(path).get(key)
    return {"path": str(folder.resolve()), "weights_sha256": digest.hexdigest(), "step": step,
            "trained_classes": list(config.get("classes") or [])}


def _safe_name(key: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._")[-80:] or "image"
    return f"{stem}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def image_inputs(paths: list[Path], stats: ReadStats) -> Iterator[dict]:
    """Image files as records: letterboxed canvas, geometry and the original; unreadable files counted."""
    options = NormalizeOptions()
    for path in paths:
        stats.read += 1
        try:
            norm = normalize_image(Path(path), options)
            original = Image.open(path)
            original.load()
        except (SampleError, OSError) as exc:
            stats.add_bad(f"{path}: {exc}")
            continue
        yield {"key": str(path), "image": Image.open(io.BytesIO(norm.data)).convert("RGB"),
               "geometry": norm.geometry.model_dump(), "original": original, "orig_size": (norm.orig_width,
                                                                                             norm.orig_height)}


def _done_keys(path: Path) -> set[str]:
    """Keys of the complete lines of an earlier run; a torn last line is cut off."""
    if not path.is_file():
        return set()
    keys, good = set(), 0
    data = path.read_bytes()
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            keys.add(json.loads(line)["key"])
        except (ValueError, KeyError):
            break
        good += len(line)
    if good != len(data):
        with open(path, "r+b") as fh:
            fh.truncate(good)
    return keys


def _geometry(record: dict) -> Geometry | None:
    geo = record.get("geometry")
    try:
        return Geometry(**geo) if isinstance(geo, dict) else None
    except Exception:  # noqa: BLE001  (a partial geometry: simply not mapped back)
        return None


def _outside_to_zero(maps: np.ndarray, geo: Geometry | None) -> None:
    """Letterbox padding is not part of the image: nothing is predicted there."""
    if geo is None:
        return
    x0, y0, x1, y1 = geo.content_box
    keep = np.zeros(maps.shape[-2:], dtype=bool)
    keep[y0:y1, x0:x1] = True
    maps[..., ~keep] = 0


def _original_boxes(boxes: list[dict], geo: Geometry) -> list[dict]:
    out = []
    for b in boxes:
        cx0, cy0, cx1, cy1 = geo.crop_box
        x0, y0 = geo.to_original(b["x0"], b["y0"])
        x1, y1 = geo.to_original(b["x1"], b["y1"])
        x0, x1 = min(max(x0, cx0), cx1), min(max(x1, cx0), cx1)
        y0, y1 = min(max(y0, cy0), cy1), min(max(y1, cy0), cy1)
        out.append({**b, "x0": round(x0, 2), "y0": round(y0, 2), "x1": round(x1, 2), "y1": round(y1, 2)})
    return out


def _overlay(record: dict, result: ImageResult, geo: Geometry | None) -> Image.Image:
    """The anomaly map tinted red over the image (the original for image files), boxes with labels."""
    heat, boxes = result.anomaly_map, result.boxes
    base = record["image"]
    if record.get("original") is not None and geo is not None:
        base = record["original"]
        w, h = record["orig_size"]
        heat = mask_to_original(np.round(heat * 255).astype(np.uint8), geo, w, h).astype(np.float32) / 255
        boxes = _original_boxes(boxes, geo)
    rgb = np.asarray(base.convert("RGB"), dtype=np.float32)
    alpha = (heat[..., None] * 0.6).clip(0, 0.6)
    tinted = rgb * (1 - alpha) + np.array([255.0, 0.0, 0.0]) * alpha
    im = Image.fromarray(tinted.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    for b in boxes[:20]:
        draw.rectangle([b["x0"], b["y0"], max(b["x0"], b["x1"] - 1), max(b["y0"], b["y1"] - 1)],
                       outline=(255, 255, 0), width=2)
        draw.text((b["x0"] + 2, max(0, b["y0"] - 11)), f"{b['label']} {b['score']:.2f}", fill=(255, 255, 0))
    return im


def _write_one(out: Path, record: dict, result: ImageResult, classes: list[str]) -> dict:
    name = _safe_name(record["key"])
    np.save(out / "maps" / f"{name}.npy", result.anomaly_map.astype(np.float32))
    Image.fromarray(result.class_index_map, "L").save(out / "maps" / f"{name}.classes.png")
    geo = _geometry(record)
    # zlib level 1: a quarter of the default level's encoding time for ~15% more bytes (overlays are for eyes)
    _overlay(record, result, geo).save(out / "overlays" / f"{name}.png", compress_level=1)
    # What the evaluation format has no field for goes under `extra` (any other top-level field is an error).
    extra = {}
    if geo is not None:
        extra["geometry"] = geo.model_dump()
        extra["boxes_original"] = _original_boxes(result.boxes, geo)
    return {"key": record["key"], "image_score": result.image_score, "label": result.label,
            "defect_type": result.defect_type, "class_scores": result.class_scores, "boxes": result.boxes,
            "anomaly_map": f"maps/{name}.npy", "class_map": f"maps/{name}.classes.png",
            "class_names": list(classes), "extra": extra}


def _clear(out: Path) -> None:
    """Remove what an earlier predict wrote into `out` (only its own files and folders)."""
    for name in ("predictions.jsonl", "predict.json", "meta.json"):
        (out / name).unlink(missing_ok=True)
    for name in ("maps", "overlays"):
        if (out / name).is_dir():
            shutil.rmtree(out / name)


def _check_out(out: Path, run: dict, overwrite: bool) -> None:
    """Resume only the same run; refuse another model's or other options' predictions unless `overwrite`."""
    if not out.exists():
        return
    if not out.is_dir():
        raise RunError(f"--out {out}: not a folder")
    if not any(out.iterdir()):
        return
    manifest = out / "predict.json"
    saved = read_json(manifest) if manifest.is_file() else None
    if saved == run:
        return
    if not overwrite:
        if saved is None:
            raise RunError(f"{out}: not empty and not written by predict; use another --out")
        what = [k for k in ("model", "options") if saved.get(k) != run.get(k)] or ["format"]
        detail = []
        if "model" in what and isinstance(saved.get("model"), dict):
            detail = [k for k in run["model"] if saved["model"].get(k) != run["model"][k]]
        elif "options" in what and isinstance(saved.get("options"), dict):
            detail = [k for k in run["options"] if saved["options"].get(k) != run["options"][k]]
        raise RunError(f"{out}: holds predictions of another model, class list or options "
                       f"({', '.join(detail or what)} differ); use another --out or --overwrite")
    if saved is None:
        raise RunError(f"{out}: not empty and not written by predict; --overwrite only replaces predict's output")
    _clear(out)


def predict(model_dir: Path, classes_text: str, out: Path, data: str | None = None, split: str | None = None,
            images: list[Path] | None = None, where: str | None = None, threshold: float | None = None,
            batch_size: int = 4, diffusion: Path | None = None, limit: int | None = None,
            progress=None, overwrite: bool = False, clip_alpha: float | None = None, clip_beta: float | None = None,
            use_clip: bool = True, device: str | None = None, dtype: str | None = None,
            clip_text: Path | None = None, writers: int = 2) -> dict:
    """Run the model over `data` (shard source) or `images` (files) and write the predictions folder.

    `writers` threads turn each image's maps into its verdict, boxes and files (PNG encoding and numpy release
    the GIL) while the main thread runs the next batch; 0 does it in the main thread. The folder is the same
    bytes either way: lines are appended in input order, each only after its files are complete, so a killed
    run resumes without duplicates or holes."""
    if batch_size < 1:
        raise RunError(f"--batch-size must be >= 1 (got {batch_size})")
    if writers < 0:
        raise RunError(f"--writers must be >= 0 (got {writers})")
    if limit is not None and limit < 1:
        raise RunError(f"--limit must be >= 1 (got {limit})")
    classes = requested_names(classes_text)  # a split file: its base and novel classes
    if not classes:
        raise RunError("--classes: give at least one class name")
    if (data is None) == (not images):
        raise RunError("give either --data or image files, not both or neither")
    warnings = [f"--classes: {c!r} is not a taxonomy term but close to {t!r}; did you mean {t!r}?"
                for c in classes for t in [near_miss(c)] if t]
    stats = ReadStats()
    source = iter_records(data, split, where, stats) if data is not None else image_inputs(images, stats)
    first = next(source, None)  # the data is read (and a bad --data/--split/--where refused) before any write
    if first is None:
        if data is not None and not stats.bad:
            raise RunError(no_records_message(data, split, where))
        raise RunError(f"{data if data is not None else 'image files'}: no usable image ({stats.bad} bad"
                       + (f", first: {stats.bad_examples[0]}" if stats.bad_examples else "") + ")")
    source = itertools.chain([first], source)
    out = Path(out)
    identity = model_identity(Path(model_dir))
    config = ckpt.read_config(Path(model_dir))
    cfg = saved_config(config["model"])
    root = Path(diffusion or config["features"]["diffusion"])
    why_not = "--no-clip" if not use_clip else clip_unavailable(root, clip_text)
    ens = ({"on": False, "reason": why_not} if why_not else
           {"on": True, "clip_alpha": cfg["clip_alpha"] if clip_alpha is None else clip_alpha,
            "clip_beta": cfg["clip_beta"] if clip_beta is None else clip_beta,
            "clip_text": str(Path(clip_text).resolve()) if clip_text else f"{root}/clip_text_encoder"})
    # no --threshold: the model's calibration.json (calibrate.py) when it matches these weights and ensemble
    threshold, threshold_source, why = resolve_threshold(Path(model_dir), threshold, identity, ens["on"], classes)
    if why:
        warnings.append(why)
    options = {"classes": classes, "threshold": threshold, "ensemble": ens,
               "source": {"data": data, "split": split, "where": where} if data is not None else "image files"}
    run = {"model": identity, "options": options}
    _check_out(out, run, overwrite)
    seg = load_model(Path(model_dir), diffusion, device, use_clip=ens["on"], clip_alpha=clip_alpha,
                     clip_beta=clip_beta, dtype=dtype, clip_text=clip_text)
    seen = [c for c in classes if seg.seen(c)]
    unseen = [c for c in classes if not seg.seen(c)]
    (out / "maps").mkdir(parents=True, exist_ok=True)
    (out / "overlays").mkdir(exist_ok=True)
    (out / "predict.json").write_text(json.dumps(run, indent=2) + "\n")
    meta = {"command": "imdd-models predict", "model": identity["path"], "weights_sha256": identity["weights_sha256"],
            "step": identity["step"], "trained_classes": identity["trained_classes"], "classes": classes,
            "seen_classes": seen, "unseen_classes": unseen, "threshold": threshold,
            "threshold_source": threshold_source, "split": split,
            "data": data, "where": where, "ensemble": ens, "options": options}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    jsonl = out / "predictions.jsonl"
    done = _done_keys(jsonl)
    written = skipped = defective = queued = 0
    batch: list[dict] = []
    pending: collections.deque = collections.deque()  # in input order: futures (writers) or finished lines

    def finish(record: dict, m: np.ndarray) -> dict:
        _outside_to_zero(m, _geometry(record))
        try:
            return _write_one(out, record, summarize(m, classes, threshold), classes)
        except OSError as e:  # a full disk, a permission, a folder in the way: the user's to fix, then rerun
            raise RunError(f"{e.filename or out}: cannot write ({e.strerror or e}); what was written is kept, "
                           "rerun to continue") from e

    def drain(fh, keep: int) -> None:
        """Append the finished lines at the head of `pending`, waiting until at most `keep` are left."""
        nonlocal written, defective
        while pending and (len(pending) > keep or not hasattr(pending[0], "result") or pending[0].done()):
            head = pending.popleft()
            line = head.result() if hasattr(head, "result") else head
            fh.write(json.dumps(line, sort_keys=True) + "\n")
            fh.flush()
            written += 1
            defective += line["label"] == "defective"
            if progress:
                progress()

    def flush(fh) -> None:
        maps = seg.maps([r["image"] for r in batch], classes)
        for record, m in zip(batch, maps):
            pending.append(pool.submit(finish, record, m) if pool else finish(record, m))
        batch.clear()
        drain(fh, keep=2 * batch_size * max(1, writers) if pool else 0)  # bounded: K MB of maps per image

    pool = ThreadPoolExecutor(writers, thread_name_prefix="predict-writer") if writers else None
    try:
        with open(jsonl, "a", encoding="utf-8") as fh:
            try:
                for record in source:
                    if limit is not None and queued >= limit:
                        break
                    if record["key"] in done:
                        skipped += 1
                        continue
                    done.add(record["key"])
                    batch.append(record)
                    queued += 1
                    if len(batch) >= batch_size:
                        flush(fh)
                if batch:
                    flush(fh)
            finally:  # also on an error or Ctrl-C: every image whose files are complete gets its line
                finished = [h for h in pending if not hasattr(h, "result") or h.exception() is None]
                pending.clear()
                pending.extend(finished)
                drain(fh, keep=0)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    return {"out": str(out), "predictions": str(jsonl), "images": written, "skipped_done": skipped,
            "defective": defective, "classes": classes, "seen_classes": seen, "unseen_classes": unseen,
            "threshold": threshold, "threshold_source": threshold_source,
            "bad": stats.bad, "bad_examples": stats.bad_examples[:5],
            "conditioning": seg.extractor.conditioning, "ensemble": ens, "split": split,
            "step": identity["step"], "warnings": warnings, "device": str(seg.extractor.device),
            "dtype": str(next(seg.extractor.vae.parameters()).dtype).removeprefix("torch.")}
