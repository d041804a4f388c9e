"""`predict`: segment, detect and classify defects named in words, on shard records or image files.

Writes the predictions folder that `imdd-models evaluate` reads (folder.py: its layout, the ordered and
threaded `PredictionsWriter`, and the identity check).
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

import hashlib
import io
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from imdd_build.errors import RunError
from imdd_build.normalize import NormalizeOptions, SampleError, normalize_image, to_8bit

from ..diffusion.interrupts import StopSignals
from ..data import ReadStats, iter_records
from ..data.explain import no_records_message
from ..jsonfile import read_json
from . import checkpoint as ckpt
from .calibrate import resolve_threshold
from .clip_head import ClipClassifier, clip_unavailable, ensemble
from .config import saved_config
from .dataset import requested_names
from .features import DiffusionFeatureExtractor, parse_device, parse_dtype
from .folder import PredictionsWriter, check_out, done_keys
from .model import MaskGenerator
from .postprocess import semantic_maps, semantic_maps_from_probs
from .text import TextEmbedder
from .vocabulary import canonical_type, near_miss_warnings

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


def image_inputs(paths: list[Path], stats: ReadStats) -> Iterator[dict]:
    """Image files as records: letterboxed canvas, geometry and the original; unreadable files counted."""
    options = NormalizeOptions()
    for path in paths:
        stats.read += 1
        try:
            norm = normalize_image(Path(path), options)
            original = Image.open(path)
            original.load()
            # the overlay's base as the model saw it: EXIF orientation applied, 16-bit/float/alpha to 8 bits
            original = to_8bit(ImageOps.exif_transpose(original), options.alpha_background)
        except (SampleError, OSError) as exc:
            stats.add_bad(f"{path}: {exc}")
            continue
        yield {"key": str(path), "image": Image.open(io.BytesIO(norm.data)).convert("RGB"),
               "geometry": norm.geometry.model_dump(), "original": original, "orig_size": (norm.orig_width,
                                                                                             norm.orig_height)}


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
    if images and (split is not None or where is not None):
        raise RunError("--split and --where choose records of --data; they do not apply to image files")
    unique = list(dict.fromkeys(Path(p) for p in images or []))  # a file given twice is predicted once
    duplicates, images = len(images or []) - len(unique), unique
    warnings = near_miss_warnings(classes)
    trained = Path(model_dir) / "train_summary.json"
    if trained.is_file():
        done_run = read_json(trained)
        if isinstance(done_run, dict) and done_run.get("stopped"):
            warnings.append(f"{model_dir}: its training was stopped ({done_run['stopped']}) at step "
                            f"{done_run.get('steps')}; these are that step's weights (train-seg --resume continues)")
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
    check_out(out, run, overwrite)
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
    done = done_keys(jsonl)
    skipped = queued = 0
    batch: list[dict] = []
    # at most 2 x batch x writers images' maps (K MB each) wait for their files
    stop = StopSignals()  # Ctrl-C/SIGTERM: the batch in flight is finished and written, then the run stops
    with stop.installed(), PredictionsWriter(out, classes, threshold, writers, 2 * batch_size * max(1, writers),
                                             progress) as lines:
        def flush() -> None:
            for r, m in zip(batch, seg.maps([r["image"] for r in batch], classes)):
                lines.add(r, m)
            batch.clear()

        for record in source:
            if stop.received or (limit is not None and queued >= limit):
                break
            if record["key"] in done:
                skipped += 1
                continue
            done.add(record["key"])
            batch.append(record)
            queued += 1
            if len(batch) >= batch_size:
                flush()
        if batch and not stop.received:
            flush()
    return {"out": str(out), "predictions": str(jsonl), "images": lines.written, "skipped_done": skipped,
            "defective": lines.defective, "classes": classes, "seen_classes": seen, "unseen_classes": unseen,
            "threshold": threshold, "threshold_source": threshold_source,
            "bad": stats.bad, "bad_examples": stats.bad_examples[:5],
            "conditioning": seg.extractor.conditioning, "ensemble": ens, "split": split,
            "step": identity["step"], "warnings": warnings, "device": str(seg.extractor.device),
            "dtype": str(next(seg.extractor.vae.parameters()).dtype).removeprefix("torch."),
            "stopped": stop.received, "duplicate_inputs": duplicates}
