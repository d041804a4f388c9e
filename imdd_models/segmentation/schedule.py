"""The learning-rate schedule of `train-seg`: linear warmup, then step decay (ODISE's / Mask2Former's recipe).

lr(step) = lr x warmup(step) x gamma ^ (number of milestones passed), with
    warmup(step) = warmup_factor + (1 - warmup_factor) x step / warmup_steps   for step < warmup_steps, else 1
    milestones   = round(fraction x horizon) for each fraction in `lr_milestones`
`horizon` is the run's planned length: the preset's (or `--epochs`') epochs x steps per epoch, or
`--schedule-steps`; `--max-steps` only stops the run early, so a run stopped and resumed follows the same
rates as one that ran straight through. ODISE: warmup 500 iterations (detectron2's factor 0.001), decay x0.1 at
88.9% and 96.3% of the horizon (Mask2Former's 327,778 and 355,092 of 368,750 iterations).
"""

from __future__ import annotations


def lr_factor(step: int, cfg: dict, horizon: int) -> float:
    """The multiplier of the base learning rate for the optimizer step `step` (0-based)."""
    warm = int(cfg.get("warmup_steps", 0))
    factor = 1.0
    if step < warm:
        start = float(cfg.get("warmup_factor", 0.001))
        factor = start + (1.0 - start) * step / warm
    passed = sum(step >= round(f * horizon) for f in cfg.get("lr_milestones", ()))
    return factor * float(cfg.get("lr_gamma", 0.1)) ** passed


def set_lr(optimizer, base_lr: float, step: int, cfg: dict, horizon: int) -> float:
    lr = base_lr * lr_factor(step, cfg, horizon)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
