"""`imdd-models train-diffusion`: the paper's stage-1 recipe on diffusers + accelerate.

A U-Net of the preset's shape from random init, frozen VAE (latents precomputed or encoded online) and
CLIP towers, DDPM with SD's scaled-linear betas, the implicit captioner with the p=0.5 switch and the
0.3 (1 - cos) alignment loss, AdamW with linear warmup then a constant LR, caption dropout for
classifier-free guidance (our addition), EMA, optional min-SNR weighting, gradient checkpointing and
torch.compile, bf16 autocast on GPU, TensorBoard logs, DDP through accelerate (one or many GPUs/nodes).

Exact resume: the checkpoint holds the weights, optimizer, LR schedule, EMA, every rank's noise RNG and
data position; the LR schedule depends on the step only, so a run to 20 resumed to 40 equals a run to 40.
All randomness of a step (noise, timesteps, switches) comes from one per-rank generator drawn on the CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from imdd_build.errors import RunError

from ..components import captioner_loss, choose_implicit, load_components
from ..data import resolve
from ..data.count import samples_in
from ..data.stream import StreamConfig, consumed_positions, seeded
from .batches import make_loader
from .checkpoint import checkpoint_dirs, load_checkpoint, save_checkpoint, tensor_state, untensor_state
from .config import config_dict, load_config
from .export import export_pipeline
from .model import DiffusionModel


class TrainError(RunError):
    """A run that cannot start (existing checkpoints without --resume, changed world size, ...)."""


def _lr_lambda(warmup: int):
    return lambda step: min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


class _Losses:
    """Mean loss of the first 10 steps and of the last 10, kept across resumes."""

    def __init__(self, state: dict | None = None):
        self.first = list((state or {}).get("first", []))
        self.last = list((state or {}).get("last", []))

    def add(self, value: float) -> None:
        if len(self.first) < 10:
            self.first.append(value)
        self.last = (self.last + [value])[-10:]

    def state(self) -> dict:
        return {"first": self.first, "last": self.last}


def train_diffusion(config_spec: str, data: str, components: Path, out: Path, max_steps: int | None = None,
                    resume: bool = False, seed: int = 0, split: str | None = None, where: str | None = None,
                    log_keys: bool = False, on_start: Callable[[int, int], None] | None = None,
                    on_step: Callable[[int, float], None] | None = None) -> dict:
    """Train (or continue) a run in `out`; returns the summary (steps, loss_start, loss_end, ...)."""
    from accelerate import Accelerator
    from accelerate.utils import gather_object
    from diffusers.training_utils import EMAModel, compute_snr

    config = load_config(config_spec)
    out = Path(out)
    existing = checkpoint_dirs(out)
    if existing and not resume:
        raise TrainError(f"{out}: has checkpoints (last {existing[-1].name}); pass --resume or use a new --out")
    if resume and not existing:
        raise TrainError(f"{out}: --resume but no checkpoint under {out / 'checkpoints'}")
    gpu = torch.cuda.is_available()
    accelerator = Accelerator(cpu=not gpu, mixed_precision=config.mixed_precision if gpu else "no",
                              log_with="tensorboard", project_dir=str(out / "logs"))
    rank, world = accelerator.process_index, accelerator.num_processes
    comps = load_components(components, device=accelerator.device)
    source = resolve(data, split)
    samples = samples_in(source, split, where)
    if samples == 0:
        raise TrainError(f"{data}: no samples (split={split}, where={where})")
    steps_per_epoch = max(1, samples // (world * config.batch_size)) if samples else None
    if max_steps is None:
        if steps_per_epoch is None:
            raise TrainError(f"{data}: sample count unknown; give --max-steps")
        max_steps = config.epochs * steps_per_epoch

    torch.manual_seed(seed)  # the same initial weights on every rank and in every run with this seed
    unet, captioner = comps.new_unet(), comps.new_captioner()
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    ema = (EMAModel(unet.parameters(), decay=config.ema_decay, use_ema_warmup=True, power=config.ema_power,
                    model_cls=type(unet), model_config=unet.config) if config.use_ema else None)
    state = {}
    if resume:
        state = load_checkpoint(existing[-1], unet, captioner, ema)
        seed = state["seed"]  # the data order and noise continue from the run's own seed
        if state["world_size"] != world or state["num_workers"] != config.num_workers:
            raise TrainError(f"{existing[-1]}: written by {state['world_size']} process(es) x "
                             f"{state['num_workers']} worker(s); resume with the same to continue exactly")
    model = DiffusionModel(unet, captioner)
    if config.compile:
        model.unet = torch.compile(model.unet)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                  betas=(config.adam_beta1, config.adam_beta2), weight_decay=config.weight_decay,
                                  eps=config.adam_epsilon, fused=gpu)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config.warmup_steps))
    model, optimizer = accelerator.prepare(model, optimizer)
    if ema is not None:
        ema.to(accelerator.device)
    generator = torch.Generator().manual_seed(seeded(seed, "noise", rank))
    step, positions, losses, bad = 0, {}, _Losses(), 0
    if resume:
        optimizer.load_state_dict(torch.load(existing[-1] / "optimizer.pt", weights_only=False))
        lr_scheduler.load_state_dict(torch.load(existing[-1] / "lr_scheduler.pt", weights_only=False))
        generator.set_state(untensor_state(state["generators"][rank]))
        positions = {int(k): tuple(v) for k, v in state["positions"][rank].items()}
        step, losses, bad = state["step"], _Losses(state["losses"]), state["bad_samples"]
    workers = max(1, config.num_workers)
    stream = StreamConfig(seed=seed, shuffle_buffer=config.shuffle_buffer, rank=rank, world_size=world,
                          split=split, where=where, start=positions,
                          worker_offset=(state.get("next_worker", [0] * world)[rank] if resume else 0))
    loader = make_loader(source, comps, stream, config.batch_size, config.num_workers, config.flip)
    if accelerator.is_main_process:
        accelerator.init_trackers("train-diffusion", config={k: v for k, v in config_dict(config).items()
                                                              if isinstance(v, (int, float, str, bool))})
    noise_scheduler = comps.scheduler
    uncond_context = comps.text_states(comps.tokenize([""]))[0]
    eos = comps.tokenizer.eos_token_id
    start_step, started, next_worker = step, time.monotonic(), stream.worker_offset
    saved_step = step if resume else -1
    if on_start and accelerator.is_main_process:
        on_start(start_step, max_steps)
    seen_log = (out / "seen" / f"rank-{rank}.txt") if log_keys else None
    if seen_log:
        seen_log.parent.mkdir(parents=True, exist_ok=True)
    batches = iter(loader)

    def checkpoint() -> None:
        nonlocal saved_step
        saved_step = step
        per_rank = gather_object([{"generator": tensor_state(generator.get_state()),
                                   "positions": {str(k): list(v) for k, v in positions.items()},
                                   "next_worker": next_worker}])
        if accelerator.is_main_process:
            save_checkpoint(out, step, unet, captioner, optimizer, lr_scheduler, ema,
                            {"step": step, "losses": losses.state(), "bad_samples": bad, "world_size": world,
                             "num_workers": config.num_workers, "seed": seed, "config": config_dict(config),
                             "generators": [r["generator"] for r in per_rank],
                             "positions": [r["positions"] for r in per_rank],
                             "next_worker": [r["next_worker"] for r in per_rank]},
                            config.keep_checkpoints)
        accelerator.wait_for_everyone()

    model.train()
    while step < max_steps:
        batch = next(batches)
        consumed_positions(batch["_pos"], positions)
        next_worker = (int(batch["_pos"][0, 0]) + 1) % workers
        bad += int(accelerator.reduce(batch["_bad"].sum().to(accelerator.device), "sum"))
        input_ids = batch["input_ids"].to(accelerator.device)
        with torch.no_grad(), accelerator.autocast():
            if "latents" in batch:
                latents, image_embeds = batch["latents"].to(accelerator.device), batch["image_embeds"]
            else:
                latents = comps.encode_latents(batch["pixels"])
                clip_pixels = batch["clip_pixels"].to(accelerator.device)
                image_embeds = comps.image_encoder(pixel_values=clip_pixels).image_embeds
            text_context, pooled = comps.text_states(input_ids)
        latents, image_embeds = latents.float(), image_embeds.to(accelerator.device).float()
        size = latents.shape[0]
        noise = torch.randn(latents.shape, generator=generator).to(accelerator.device)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (size,), generator=generator)
        implicit = choose_implicit(size, config.p_implicit, generator).to(accelerator.device)
        dropped = (torch.rand(size, generator=generator) < config.caption_dropout).to(accelerator.device)
        timesteps = timesteps.to(accelerator.device)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        with accelerator.autocast():
            pred, t_imp = model(noisy, timesteps, text_context, uncond_context, image_embeds, implicit, dropped)
        mse = F.mse_loss(pred.float(), noise, reduction="none").mean(dim=(1, 2, 3))
        if config.snr_gamma:
            snr = compute_snr(noise_scheduler, timesteps)
            mse = mse * torch.clamp(snr, max=config.snr_gamma) / snr
        has_caption = input_ids[:, 1] != eos  # an empty caption has nothing to align with
        loss_cap = (captioner_loss(t_imp[has_caption], pooled[has_caption], config.captioner_loss_weight)
                    if bool(has_caption.any()) else t_imp.sum() * 0.0)
        loss = mse.mean() + loss_cap
        accelerator.backward(loss)
        if accelerator.sync_gradients and config.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(unet.parameters())
        step += 1
        value = float(accelerator.reduce(loss.detach(), "mean"))
        if not math.isfinite(value):
            raise TrainError(f"step {step}: loss is {value}; lower the learning rate or check the data")
        losses.add(value)
        if seen_log:
            with seen_log.open("a") as fh:
                epochs = batch["_pos"][:, 1].tolist()
                fh.write("".join(f"{step}\t{epoch}\t{key}\n" for key, epoch in zip(batch["key"], epochs)))
        if step % config.log_every == 0 or step == max_steps:
            accelerator.log({"loss": value, "loss_diffusion": float(mse.detach().mean()),
                             "loss_captioner": float(loss_cap.detach()),
                             "lr": lr_scheduler.get_last_lr()[0]}, step=step)
        if on_step and accelerator.is_main_process:
            on_step(step, value)
        if step % config.checkpoint_every == 0 and step < max_steps:
            checkpoint()
    if saved_step != step:  # every run ends with a checkpoint (same decision on every rank)
        checkpoint()
    elapsed = time.monotonic() - started
    if accelerator.is_main_process:
        export_pipeline(out, comps, unet, captioner, ema)
    accelerator.end_training()
    trained = step - start_step
    return {"out": str(out), "steps": step, "steps_this_run": trained, "resumed_from": start_step if resume else None,
            "loss_start": sum(losses.first) / max(1, len(losses.first)),
            "loss_end": sum(losses.last) / max(1, len(losses.last)),
            "max_steps": max_steps, "steps_per_epoch": steps_per_epoch, "world_size": world,
            "batch_size": config.batch_size, "data_kind": source.kind, "bad_samples": bad,
            "seconds": round(elapsed, 2),
            "images_per_s": round(trained * config.batch_size * world / elapsed, 2) if elapsed > 0 else None,
            "ema": config.use_ema, "tensorboard": str(out / "logs")}
