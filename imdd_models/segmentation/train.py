"""`train-seg`: train the mask generator on frozen diffusion features (accelerate; exact resume on CPU).

Per step: a batch of the training set (a seeded permutation per epoch) is decoded, augmented (augment.py),
its targets built (targets.py) and its pixels preprocessed in DataLoader workers (`--num-workers`, pinned
memory on a GPU, prefetch); its features are extracted by the frozen diffusion model (features.py, in
`--dtype` on `--device`, or read from a feature cache), and the mask generator trained with the set criterion,
the image-level label loss and the grounding loss (losses.py), the learning rate following the preset's warmup
and step decay (schedule.py). The state (weights, optimizer, RNG, losses) is saved every `save_every` steps
and at the end; `--resume` continues from it to the same weights as an uninterrupted run (the batches and the
augmentation depend only on the seed and the step, never on a worker's RNG).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from imdd_build.errors import RunError

from . import augment
from . import checkpoint as ckpt
from ..data.sources import data_spec
from ..diffusion.interrupts import StopSignals
from ..outdir import refuse_foreign
from .cache import FeatureCache
from .config import get_config, with_overrides
from .dataset import SegSamples, class_names, collate, select
from .features import DEFAULT_TIMESTEP, DiffusionFeatureExtractor, parse_device, parse_dtype
from .losses import SetCriterion, grounding_loss, label_loss
from .model import MaskGenerator
from .schedule import set_lr
from .text import TextEmbedder
from .validation import DEFAULT_LIMIT as DEFAULT_EVAL_LIMIT
from .validation import BEST, eval_summary, evaluate_step, load_held_out

NOISE_SEED = 0  # the fixed feature noise (part of the model: predict uses the same)


class TrainError(RunError):
    """A training run that cannot start or continue; one line naming the reason."""


@dataclass
class TrainOptions:
    diffusion: Path
    data: str
    config: str
    out: Path
    classes: str = "all"
    shots: int | None = None
    normal_shots: int | None = None  # normal records with --shots (default: as many as --shots)
    max_steps: int | None = None
    seed: int = 0
    resume: bool = False
    split: str | None = "train"
    where: str | None = None
    batch_size: int | None = None
    lr: float | None = None
    epochs: int | None = None
    timestep: int = DEFAULT_TIMESTEP
    save_every: int = 100
    mixed_precision: str = "no"
    cache_features: Path | None = None
    device: str | None = None  # cpu, cuda, cuda:N (default: cuda when available)
    dtype: str | None = None  # of the frozen backbone: auto (bf16/fp16 on a GPU, fp32 on the CPU) or a name
    num_workers: int = 2  # DataLoader workers decoding, augmenting, building targets, preprocessing
    augment: str = "on"  # on (the preset's flip + scale jitter), flip, off
    schedule_steps: int | None = None  # the LR schedule's horizon (default: epochs x steps per epoch)
    overrides: dict = field(default_factory=dict)
    allow_untrained: bool = False  # max_steps 0 writes the initial weights (a baseline), else refused
    eval_every: int = 0  # score held-out records every N steps and keep the best step's weights (validation.py)
    eval_split: str = "validation"
    eval_limit: int | None = DEFAULT_EVAL_LIMIT


def check_options(opts: "TrainOptions") -> None:
    """Numeric options in range, one RunError line naming the option (before anything is read or written)."""
    checks = [("--max-steps", opts.max_steps, 0 if opts.allow_untrained else 1), ("--batch-size", opts.batch_size, 1),
              ("--epochs", opts.epochs, 1), ("--shots", opts.shots, 1), ("--normal-shots", opts.normal_shots, 0),
              ("--save-every", opts.save_every, 1),
              ("--timestep", opts.timestep, 0), ("--eval-every", opts.eval_every, 0),
              ("--eval-limit", opts.eval_limit, 1)]
    for name, value, low in checks:
        if value is not None and value < low:
            hint = " (0 only with --allow-untrained)" if name == "--max-steps" and value == 0 else ""
            raise RunError(f"{name} must be >= {low} (got {value}){hint}")
    if opts.timestep > 999:
        raise RunError(f"--timestep must be < 1000 (got {opts.timestep})")
    if opts.lr is not None and not (math.isfinite(opts.lr) and opts.lr > 0):
        raise RunError(f"--lr must be a positive number (got {opts.lr})")
    if opts.eval_every and opts.split and opts.eval_split == opts.split:
        raise RunError(f"--eval-split {opts.eval_split}: the training split; evaluate on held-out records")
    if opts.eval_every and not opts.split:
        raise RunError("--eval-every: training uses every split (--split ''), so no records are held out")
    if opts.normal_shots is not None and opts.shots is None:
        raise RunError("--normal-shots: only with --shots (without it every normal record is used)")
    if opts.mixed_precision not in ("no", "fp16", "bf16"):
        raise RunError(f"--mixed-precision {opts.mixed_precision!r}: choose no, fp16 or bf16")


def check_diffusion_folder(root: Path) -> None:
    """FileNotFoundError naming what is missing, without loading anything."""
    missing = [n for n in ("unet", "vae", "text_encoder", "tokenizer", "scheduler") if not (root / n).is_dir()]
    if missing:
        raise FileNotFoundError(f"--diffusion {root}: not a diffusion model folder (missing {', '.join(missing)}/)")


def _window(losses: list[float], head: bool) -> float | None:
    if not losses:
        return None
    w = max(1, min(5, len(losses) // 4))
    part = losses[:w] if head else losses[-w:]
    return round(sum(part) / len(part), 6)


def _batch_indices(n: int, batch: int, seed: int, step: int) -> list[int]:
    """Indices of global step `step`: a seeded permutation per epoch, the last short batch kept."""
    per_epoch = math.ceil(n / batch)
    epoch, pos = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
    return perm[pos * batch:(pos + 1) * batch]


class _StepBatches:
    """The batch sampler: for each global step from `start` to `total`, [(step, row index), ...]."""

    def __init__(self, n: int, batch: int, seed: int, start: int, total: int, rank: int, world: int):
        self.n, self.batch, self.seed, self.start, self.total = n, batch, seed, start, total
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __iter__(self):
        for step in range(self.start, self.total):
            idx = _batch_indices(self.n, self.batch, self.seed, step)
            idx = idx[self.rank::self.world] or idx[:1]
            yield [(step, i) for i in idx]


# What train-seg (and calibrate) write into --out: a folder holding only these is its own (a run that failed
# before its first checkpoint leaves selection.json; an untrained --max-steps 0 run, the config and weights).
_OWN_FILES = {ckpt.CONFIG, ckpt.WEIGHTS, ckpt.STATE_DIR, "selection.json", "train_summary.json", "calibration.json",
              "best.safetensors"}


def _check_resume(out: Path, resume: bool, identity: dict, cfg: dict) -> dict | None:
    """The saved run's identity when `out` holds one to continue; a TrainError when it must not be continued
    (no --resume, or other settings: the identity or any model/optimisation value, e.g. --lr, named)."""
    if not ckpt.has_state(out):
        if resume and (out / ckpt.CONFIG).is_file():
            raise TrainError(f"{out}: --resume but no checkpoint state there")
        if not resume:
            refuse_foreign(out, _OWN_FILES, "a train-seg run")
        return None
    if not resume:
        raise TrainError(f"{out}: holds a training run; pass --resume to continue it or choose another --out")
    config = ckpt.read_config(out)
    saved = config.get("run", {})
    diffs = [k for k in identity if saved.get(k) != identity[k]]
    saved_cfg = config.get("model") or {}
    diffs += [f"{k}: {saved_cfg[k]} -> {v}" for k, v in cfg.items() if k in saved_cfg and saved_cfg[k] != v
              and k not in identity]
    if diffs:
        raise TrainError(f"{out}: --resume with different settings ({', '.join(diffs)}) than the saved run")
    return saved


def train_seg(opts: TrainOptions, progress: Callable[[int, int], None] | None = None) -> dict:
    """Train (or resume) and return the summary (`steps`, `loss_start`, `loss_end`, `classes`, `samples`, ...)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    check_options(opts)
    cfg = get_config(opts.config)
    given = {k: v for k, v in (("batch_size", opts.batch_size), ("lr", opts.lr), ("epochs", opts.epochs))
             if v is not None}
    cfg = with_overrides(cfg, {**given, **opts.overrides})
    out = Path(opts.out)
    check_diffusion_folder(Path(opts.diffusion))  # before anything is written into --out
    if opts.num_workers < 0:
        raise TrainError(f"--num-workers must be >= 0 (got {opts.num_workers})")
    if opts.schedule_steps is not None and opts.schedule_steps < 1:
        raise TrainError(f"--schedule-steps must be >= 1 (got {opts.schedule_steps})")
    try:
        device = parse_device(opts.device)
        frozen_dtype = parse_dtype(opts.dtype, device)
        aug = augment.settings(cfg, opts.augment)
    except ValueError as exc:
        raise TrainError(str(exc)) from None
    tset = select(opts.data, opts.split, opts.where, opts.classes, opts.shots, opts.seed, opts.normal_shots)
    keys = [r["key"] for r in tset.rows]
    steps_per_epoch = math.ceil(len(tset.rows) / cfg["batch_size"])
    horizon = opts.schedule_steps or cfg["epochs"] * steps_per_epoch
    identity = {"config": opts.config, "classes": tset.classes, "keys_hash": _hash(keys), "seed": opts.seed,
                "batch_size": cfg["batch_size"], "timestep": opts.timestep,
                "diffusion": str(Path(opts.diffusion).resolve()),
                "cached_features": opts.cache_features is not None,  # cached features are fp16-rounded
                "augment": aug, "schedule_steps": horizon, "dtype": str(frozen_dtype).removeprefix("torch.")}
    if opts.eval_every:  # only then: runs saved without evaluation resume as before
        identity["eval"] = {"every": opts.eval_every, "split": opts.eval_split, "limit": opts.eval_limit}
    resumed = _check_resume(out, opts.resume, identity, cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "selection.json").write_text(json.dumps({"keys": keys, **tset.summary(), "classes": tset.classes},
                                                   indent=1, sort_keys=True) + "\n")

    # A batch may hold only label-only or only pixel records: some parameters get no gradient in a step.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    accelerator = Accelerator(mixed_precision=opts.mixed_precision, cpu=device.type == "cpu",
                              kwargs_handlers=[ddp])
    if device.index is not None and accelerator.device != device:
        raise TrainError(f"--device {device}: accelerate runs this process on {accelerator.device}; "
                         f"choose the GPU with CUDA_VISIBLE_DEVICES (or `accelerate launch`) and pass --device cuda")
    extractor = DiffusionFeatureExtractor.from_folder(opts.diffusion, opts.timestep, NOISE_SEED,
                                                      accelerator.device, frozen_dtype)
    text = TextEmbedder(extractor.text_encoder, extractor.tokenizer)
    class_text = text(tset.classes).to(accelerator.device)
    torch.manual_seed(opts.seed)
    model = MaskGenerator(cfg, extractor.taps, text.dim)
    criterion = SetCriterion(cfg, len(tset.classes)).to(accelerator.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model = accelerator.unwrap_model(model)
    novel = [] if opts.classes.strip().lower() == "all" else class_names(opts.classes)[1]
    run_config = {"preset": opts.config, "model": cfg, "classes": tset.classes, "novel": novel,
                  "text_dim": text.dim, "features": {**extractor.describe(), "noise_seed": NOISE_SEED},
                  "run": identity,
                  # what calibrate refuses to calibrate on (the records trained on); not part of the resume identity
                  "training": {"data": data_spec(opts.data),
                               "split": opts.split, "where": opts.where}}
    trainer = {"step": 0, "losses": []}
    if resumed is not None:
        trainer = ckpt.load_state(out, raw_model, optimizer)
    else:
        torch.manual_seed(opts.seed + 1)  # the loop's randomness (point sampling) from its own seed
    trainer.setdefault("eval", [])
    trainer.setdefault("best", None)
    total = opts.max_steps if opts.max_steps is not None else cfg["epochs"] * steps_per_epoch
    held = None
    if opts.eval_every and accelerator.is_main_process:
        rng = torch.get_rng_state()  # reading and extracting draw nothing; kept exact regardless
        held = load_held_out(opts.data, opts.eval_split, opts.where, tset.classes, extractor, cfg["batch_size"],
                             opts.eval_limit)
        torch.set_rng_state(rng)
    cache = FeatureCache(opts.cache_features, extractor) if opts.cache_features else None
    class_index = {c: i for i, c in enumerate(tset.classes)}
    samples = SegSamples(tset.rows, class_index, extractor.resolution, cfg["num_queries"],
                         extractor.image_processor if extractor.captioner is not None else None, aug, opts.seed)
    sampler = _StepBatches(len(tset.rows), cfg["batch_size"], opts.seed, trainer["step"], total,
                           accelerator.process_index, accelerator.num_processes)
    loader = torch.utils.data.DataLoader(samples, batch_sampler=sampler, collate_fn=collate,
                                         num_workers=opts.num_workers, pin_memory=accelerator.device.type == "cuda",
                                         prefetch_factor=4 if opts.num_workers else None,
                                         # its own generator: the loader's base seed never draws from the
                                         # global RNG that the loss's point sampling (and resume) relies on
                                         generator=torch.Generator().manual_seed(opts.seed))
    # On the CPU the workers need cores too: the main process keeps (cores - workers) torch threads, at least 1
    # (more threads than cores makes every OpenMP barrier spin; restored at the end).
    threads = torch.get_num_threads()
    if accelerator.device.type == "cpu" and opts.num_workers:
        torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 1) - opts.num_workers)))
    train_threads = torch.get_num_threads()
    def _step(batch: dict) -> None:
        nonlocal seen, saved_step
        targets = batch["targets"]
        seen += len(targets)
        prepared = {"pixels": batch["pixels"], "clip": batch["clip"]}
        feats = cache.get(batch["cache_keys"], prepared) if cache else extractor(prepared)
        set_lr(optimizer, cfg["lr"], trainer["step"], cfg, horizon)
        with accelerator.autocast():
            result = model(feats, class_text)
            loss = _loss(result, targets, criterion, raw_model, class_text, class_index, cfg)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if cfg["max_grad_norm"]:
            accelerator.clip_grad_norm_(model.parameters(), cfg["max_grad_norm"])
        optimizer.step()
        trainer["step"] += 1
        trainer["losses"].append(round(float(accelerator.gather(loss.detach()[None]).mean()), 6))
        if progress:
            progress(trainer["step"], total)
        if held is not None and (trainer["step"] % opts.eval_every == 0 or trainer["step"] == total):
            evaluate_step(out, raw_model, held, class_text, trainer)
        if accelerator.is_main_process and (trainer["step"] % opts.save_every == 0 or trainer["step"] == total):
            ckpt.save_model(out, raw_model, run_config)
            ckpt.save_state(out, raw_model, optimizer, trainer)
            saved_step = trainer["step"]

    started = time.perf_counter()
    seen = 0
    saved_step = trainer["step"]
    stop, stopped = StopSignals(), None
    model.train()
    with stop.installed():  # the stop's save below happens with the handlers still in place
        iterator = iter(loader) if len(sampler) else iter(())
        while True:
            batch = _next_batch(iterator, stop)
            # one reduction per step: any rank's signal, or the loader's end (the same step on every rank)
            signalled, ended = _flags(stop, accelerator, batch is None)
            if signalled and trainer["step"] < total:  # Ctrl-C or SIGTERM: save the steps done, then stop
                stopped = stop.received or "signal on another rank"
                break
            if ended:
                break
            _step(batch)
        if stopped:
            if accelerator.is_main_process and trainer["step"] != saved_step:
                ckpt.save_model(out, raw_model, run_config)
                ckpt.save_state(out, raw_model, optimizer, trainer)
            accelerator.wait_for_everyone()  # no rank exits (and gets its launcher to kill the rest) before it
    elapsed = time.perf_counter() - started
    torch.set_num_threads(threads)
    if accelerator.is_main_process and not (out / ckpt.WEIGHTS).is_file():
        ckpt.save_model(out, raw_model, run_config)  # zero steps asked: the initial weights
    best = trainer.get("best")
    if accelerator.is_main_process and held is not None and best is not None and (out / BEST).is_file():
        # the folder's model is the best held-out step; checkpoint/ keeps the last step for --resume
        ckpt.save_weights(out, ckpt.read_weights(out / BEST), {**run_config, "selected": {
            "step": best["step"], held.metric: best["value"], "split": opts.eval_split,
            "last_step": trainer["step"]}})
    summary = {"out": str(out), "config": opts.config, "steps": trainer["step"],
               "loss_start": _window(trainer["losses"], True), "loss_end": _window(trainer["losses"], False),
               "classes": tset.classes, "novel": novel, **tset.summary(),
               "seconds": round(elapsed, 2),
               "trainable_params": sum(p.numel() for p in raw_model.parameters() if p.requires_grad),
               "conditioning": extractor.conditioning, "resumed": resumed is not None,
               "untrained": trainer["step"] == 0, "device": str(accelerator.device), "dtype": identity["dtype"],
               "num_workers": opts.num_workers, "torch_threads": train_threads,
               "augment": aug["mode"], "schedule_steps": horizon,
               "samples_seen": seen, "samples_per_s": round(seen / elapsed, 3) if seen else None,
               "cache_hits": cache.hits if cache else None, "stopped": stopped}
    if opts.eval_every:
        if held is not None:
            summary["eval"] = eval_summary(held, trainer, opts.eval_every, opts.eval_split)
        elif accelerator.is_main_process:
            summary["eval"] = {"skipped": f"--eval-split {opts.eval_split}: no held-out records of both labels "
                                          "(normal, and defective of the trained classes) in --data"}
        else:
            summary["eval"] = {}
    if accelerator.is_main_process:
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def _next_batch(iterator, stop: StopSignals):
    """The loader's next batch, None at its end; after a stop signal, a loader whose workers the same Ctrl-C
    ended (a terminal signals the whole process group) counts as ended instead of failing the run."""
    try:
        return next(iterator)
    except StopIteration:
        return None
    except RuntimeError:
        if stop.received is None:
            raise
        return None


def _flags(stop: StopSignals, accelerator, ended: bool) -> tuple[bool, bool]:
    """(a stop signal on any rank, the data ended on any rank): the same answer on every rank."""
    if accelerator.num_processes == 1:
        return stop.received is not None, ended
    flags = torch.tensor([float(stop.received is not None), float(ended)], device=accelerator.device)
    signalled, done = accelerator.reduce(flags, "sum").tolist()
    return signalled > 0, done > 0


def _loss(result: dict, targets: list, criterion: SetCriterion, model: MaskGenerator, class_text: torch.Tensor,
          class_index: dict[str, int], cfg: dict) -> torch.Tensor:
    pixel_rows = [i for i, t in enumerate(targets) if t.has_pixels]
    label_rows = [i for i, t in enumerate(targets) if not t.has_pixels and t.labels]
    term_rows = [i for i, t in enumerate(targets) if t.terms]
    total = result["logits"][-1].sum() * 0.0  # keeps the graph when a batch has nothing to learn from
    if pixel_rows:
        total = total + criterion(result, targets, pixel_rows)
    if label_rows:
        total = total + cfg["label_weight"] * label_loss(result, targets, label_rows, criterion.num_classes)
    if len(term_rows) > 1 and cfg["grounding_weight"]:
        names = sorted({t for i in term_rows for t in targets[i].terms})
        projected = model.classifier.project(class_text)
        embeds = {n: projected[class_index[n]] for n in names}
        g = grounding_loss(result, targets, embeds, model.classifier.scale(), term_rows)
        if g is not None:
            total = total + cfg["grounding_weight"] * g
    return total


def _hash(keys: list[str]) -> str:
    import hashlib
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
