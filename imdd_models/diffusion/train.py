"""`imdd-models train-diffusion`: the paper's stage-1 recipe on diffusers + accelerate.

A U-Net of the preset's shape from random init, frozen VAE (latents precomputed or encoded online) and
CLIP towers, DDPM with SD's scaled-linear betas, the implicit captioner with the p=0.5 switch and the
0.3 (1 - cos) alignment loss, AdamW with linear warmup then a constant LR, caption dropout for
classifier-free guidance (our addition), EMA over the U-Net and the captioner, optional min-SNR weighting
(epsilon and v-prediction, as the scheduler config says), gradient accumulation, gradient checkpointing and
torch.compile, bf16 autocast on GPU, TensorBoard logs, DDP through accelerate (one or many GPUs/nodes).

The GPU step: frozen towers in the mixed-precision dtype, channels_last and TF32 on CUDA, no host sync inside
a step (losses and counts stay on the device and are reduced at log intervals; noise, timesteps and switches
come from a seeded generator on the device; the noise schedule lives on the device).

Exact resume: the checkpoint holds the weights, optimizer, LR schedule, EMA, every rank's noise RNG and
data position, and the run's identity (batch size, accumulation, seed, shuffle buffer, data, ...), which a
resume must match. The LR schedule depends on the step only, so a run to 20 resumed to 40 equals a run to 40.
All randomness of an optimizer step is drawn at once for its whole (accumulated) batch, so accumulation 2 x
batch 2 draws what batch 4 draws.

Interrupts: SIGINT (Ctrl-C) or SIGTERM finish the current optimizer step (with several processes: up to
`log_every` steps, where the ranks agree), write a checkpoint and return a summary with `stopped`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from .._compat import hf_ready
from ..components import load_components
from ..data import resolve
from ..data.count import samples_in
from ..data.explain import no_records_message
from ..data.stream import StreamConfig, consumed_positions, seeded
from .batches import make_loader
from .checkpoint import (checkpoint_dirs, damaged_as_error, load_checkpoint, read_state, save_checkpoint, tensor_state,
                         untensor_state)
from .config import config_dict, default_config, load_config
from .export import export_pipeline
from .interrupts import StopSignals
from .model import DiffusionModel
from .objective import NoiseSchedule, masked_captioner_loss
from .resume import TrainError, check_identity, check_same_components, check_same_recipe, data_identity

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _lr_lambda(warmup: int):
    return lambda step: min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


def loader_workers(requested: int, local_processes: int = 1) -> int:
    """DataLoader workers per process: the config's, capped by the cores this process may use."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return min(requested, max(1, cores // max(1, local_processes)))


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


def train_diffusion(config_spec: str | None, data: str, components: Path, out: Path, max_steps: int | None = None,
                    resume: bool = False, seed: int | None = None, split: str | None = None,
                    where: str | None = None, log_keys: bool = False,
                    on_start: Callable[[int, int], None] | None = None,
                    on_step: Callable[[int, float | None], None] | None = None,
                    save_every: int | None = None, save_every_minutes: float | None = None,
                    stop: StopSignals | None = None, save_at_end: bool = True,
                    on_done: Callable[[dict], None] | None = None) -> dict:
    """Train (or continue) a run in `out`; returns the summary (steps, loss_start, loss_end, ...; `stopped`
    when a signal ended it early). `save_at_end=False` (benchmarks) skips the final checkpoint and export."""
    hf_ready()
    from accelerate import Accelerator
    from accelerate.utils import gather_object
    from diffusers.training_utils import EMAModel

    preset = default_config(components)  # the components folder's own preset: --config's default and YAML's base
    config_spec = config_spec or preset
    config = load_config(config_spec, default_base=preset)
    if save_every is not None:
        config.checkpoint_every = save_every
    if save_every_minutes is not None:
        config.checkpoint_every_minutes = save_every_minutes
    out = Path(out)
    existing = checkpoint_dirs(out)
    if existing and not resume:
        raise TrainError(f"{out}: has checkpoints (last {existing[-1].name}); pass --resume or use a new --out")
    if resume and not existing:
        raise TrainError(f"{out}: --resume but no checkpoint under {out / 'checkpoints'}")
    saved_state = read_state(existing[-1]) if resume else {}
    if seed is None:
        seed = saved_state.get("seed", 0)  # the data order and noise continue from the run's own seed
    source = resolve(data, split)  # the data is checked before anything is created in `out`
    samples = samples_in(source, split, where)
    if samples == 0:
        raise TrainError(no_records_message(data, split, where))
    gpu = torch.cuda.is_available()
    accum = config.gradient_accumulation_steps
    accelerator = Accelerator(cpu=not gpu, mixed_precision=config.mixed_precision if gpu else "no",
                              gradient_accumulation_steps=accum, log_with="tensorboard",
                              project_dir=str(out / "logs"))
    device = accelerator.device
    rank, world = accelerator.process_index, accelerator.num_processes
    if device.type == "cuda" and config.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    frozen = config.frozen_dtype
    if frozen == "auto":
        frozen = config.mixed_precision if device.type == "cuda" and config.mixed_precision != "no" else "fp32"
    comps = load_components(components, device=device, dtype=DTYPES[frozen])
    steps_per_epoch = max(1, samples // (world * config.batch_size)) if samples else None
    if steps_per_epoch is not None:
        steps_per_epoch = max(1, steps_per_epoch // accum)  # optimizer steps
    if max_steps is None:
        if steps_per_epoch is None:
            raise TrainError(f"{data}: sample count unknown; give --max-steps")
        max_steps = config.epochs * steps_per_epoch
    workers = loader_workers(config.num_workers, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    identity = {"batch_size": config.batch_size, "gradient_accumulation_steps": accum, "seed": seed,
                "shuffle_buffer": config.shuffle_buffer, "flip": config.flip, "data": data_identity(source),
                "split": split, "where": where, "world_size": world, "num_workers": workers}
    if resume:
        saved_run = saved_state.get("run")
        if saved_run is None and (saved_state.get("world_size") != world or saved_state.get("num_workers") != workers):
            raise TrainError(f"{existing[-1]}: written by {saved_state.get('world_size')} process(es) x "
                             f"{saved_state.get('num_workers')} worker(s); resume with the same to continue exactly")
        check_identity(existing[-1], saved_run, identity)
        check_same_recipe(existing[-1], saved_state.get("config"), config_dict(config))
        recorded = saved_state.get("components")
        if recorded and Path(recorded).resolve() != Path(components).resolve():
            check_same_components(str(components), (saved_state.get("components_manifest") or {}), comps.manifest)

    torch.manual_seed(seed)  # the same initial weights on every rank and in every run with this seed
    unet, captioner = comps.new_unet(), comps.new_captioner()
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    trained_params = list(unet.parameters()) + list(captioner.parameters())
    ema = (EMAModel(trained_params, decay=config.ema_decay, use_ema_warmup=True, power=config.ema_power,
                    foreach=True) if config.use_ema else None)
    state = {}
    if resume:
        state = load_checkpoint(existing[-1], unet, captioner, ema)
    channels_last = device.type == "cuda" and config.channels_last
    if channels_last:
        unet.to(memory_format=torch.channels_last)
    model = DiffusionModel(unet, captioner)
    if config.compile:
        model.unet = torch.compile(model.unet)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                  betas=(config.adam_beta1, config.adam_beta2), weight_decay=config.weight_decay,
                                  eps=config.adam_epsilon, fused=gpu)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config.warmup_steps))
    model, optimizer = accelerator.prepare(model, optimizer)
    if ema is not None:
        ema.to(device)
    generator = torch.Generator(device=device).manual_seed(seeded(seed, "noise", rank))
    step, positions, losses, bad = 0, {}, _Losses(), 0
    if resume:
        with damaged_as_error(existing[-1]):
            optimizer.load_state_dict(torch.load(existing[-1] / "optimizer.pt", weights_only=False))
            lr_scheduler.load_state_dict(torch.load(existing[-1] / "lr_scheduler.pt", weights_only=False))
            generator.set_state(untensor_state(state["generators"][rank]))
            positions = {int(k): tuple(v) for k, v in state["positions"][rank].items()}
            step, losses = state["step"], _Losses(state["losses"])
            bad = state["bad_per_rank"][rank] if "bad_per_rank" in state else (state["bad_samples"] if rank == 0 else 0)
    stream = StreamConfig(seed=seed, shuffle_buffer=config.shuffle_buffer, rank=rank, world_size=world,
                          split=split, where=where, start=positions,
                          worker_offset=(state.get("next_worker", [0] * world)[rank] if resume else 0))
    loader = make_loader(source, comps, stream, config.batch_size, workers, config.flip)
    if accelerator.is_main_process:
        accelerator.init_trackers("train-diffusion", config={k: v for k, v in config_dict(config).items()
                                                              if isinstance(v, (int, float, str, bool))})
    schedule = NoiseSchedule(comps.scheduler, device)
    uncond_context = comps.text_states(comps.tokenize([""]))[0].float()
    eos = comps.tokenizer.eos_token_id
    start_step, started, next_worker = step, time.monotonic(), stream.worker_offset
    saved_step, last_save = (step if resume else -1), time.monotonic()
    if on_start and accelerator.is_main_process:
        on_start(start_step, max_steps)
    seen_log = (out / "seen" / f"rank-{rank}.txt") if log_keys else None
    if seen_log:
        seen_log.parent.mkdir(parents=True, exist_ok=True)
    batches = iter(loader)
    stop = stop or StopSignals()
    pending: list[torch.Tensor] = []  # per-step losses on the device, reduced at the next log point
    sums = torch.zeros(2, device=device)  # diffusion and captioner loss since the last log point
    stopped: str | None = None
    last_checkpoint: Path | None = existing[-1] if resume else None

    def checkpoint() -> None:
        nonlocal saved_step, last_save, last_checkpoint
        saved_step, last_save = step, time.monotonic()
        per_rank = gather_object([{"generator": tensor_state(generator.get_state()),
                                   "positions": {str(k): list(v) for k, v in positions.items()},
                                   "next_worker": next_worker, "bad": bad}])
        if accelerator.is_main_process:
            last_checkpoint = save_checkpoint(
                out, step, unet, captioner, optimizer, lr_scheduler, ema,
                {"step": step, "losses": losses.state(), "bad_samples": sum(r["bad"] for r in per_rank),
                 "bad_per_rank": [r["bad"] for r in per_rank], "world_size": world, "num_workers": workers,
                 "seed": seed, "config": config_dict(config), "run": identity,
                 "components": str(Path(components).resolve()), "components_manifest": comps.manifest,
                 "generators": [r["generator"] for r in per_rank],
                 "positions": [r["positions"] for r in per_rank],
                 "next_worker": [r["next_worker"] for r in per_rank]},
                config.keep_checkpoints)
        else:
            last_checkpoint = out / "checkpoints" / f"step-{step:08d}"
        accelerator.wait_for_everyone()

    def flush(at_step: int) -> None:
        """The log point: the only host syncs of the loop (losses reduced over ranks, checked, logged)."""
        nonlocal sums
        if not pending:
            return
        values = accelerator.reduce(torch.stack(pending), "mean").tolist()
        first = at_step - len(pending) + 1
        for i, value in enumerate(values):
            if value != value or value in (float("inf"), float("-inf")):
                raise TrainError(f"step {first + i}: loss is {value}; lower the learning rate or check the data")
            losses.add(value)
        parts = (accelerator.reduce(sums, "mean") / len(pending)).tolist()
        accelerator.log({"loss": sum(values) / len(values), "loss_diffusion": parts[0], "loss_captioner": parts[1],
                         "lr": lr_scheduler.get_last_lr()[0]}, step=at_step)
        pending.clear()
        sums = torch.zeros(2, device=device)

    def should_stop_or_save() -> tuple[bool, bool]:
        """(stop, save by time): decided on rank 0's clock and any rank's signal, the same on every rank."""
        by_time = (config.checkpoint_every_minutes > 0
                   and time.monotonic() - last_save >= 60 * config.checkpoint_every_minutes)
        if world == 1:
            return stop.received is not None, by_time
        flags = torch.tensor([float(stop.received is not None), float(by_time and rank == 0)], device=device)
        flags = accelerator.reduce(flags, "sum").tolist()
        return flags[0] > 0, flags[1] > 0

    model.train()
    micro = config.batch_size
    with stop.installed():
        while step < max_steps:
            for m in range(accum):
                batch = next(batches)
                consumed_positions(batch["_pos"], positions)
                next_worker = (int(batch["_pos"][0, 0]) + 1) % max(1, workers)
                bad += int(batch["_bad"].sum())  # a CPU tensor from the loader: no device sync
                input_ids = batch["input_ids"].to(device, non_blocking=True)
                with torch.no_grad():
                    if "latents" in batch:
                        latents = batch["latents"].to(device, non_blocking=True).float()
                        image_embeds = batch["image_embeds"].to(device, non_blocking=True).float()
                    else:
                        latents = comps.encode_latents(batch["pixels"].to(device, non_blocking=True)).float()
                        clip_pixels = batch["clip_pixels"].to(device, comps.image_encoder.dtype, non_blocking=True)
                        image_embeds = comps.image_encoder(pixel_values=clip_pixels).image_embeds.float()
                    text_context, pooled = comps.text_states(input_ids)
                    text_context, pooled = text_context.float(), pooled.float()
                if m == 0:  # every random draw of the optimizer step at once, on the device
                    total = micro * accum
                    noise_all = torch.randn((total, *latents.shape[1:]), generator=generator, device=device)
                    t_all = torch.randint(0, schedule.num_train_timesteps, (total,), generator=generator,
                                          device=device)
                    coins = torch.rand((2, total), generator=generator, device=device)
                    implicit_all, dropped_all = coins[0] < config.p_implicit, coins[1] < config.caption_dropout
                part = slice(m * micro, (m + 1) * micro)
                noise, timesteps = noise_all[part], t_all[part]
                noisy = schedule.add_noise(latents, noise, timesteps)
                if channels_last:
                    noisy = noisy.contiguous(memory_format=torch.channels_last)
                with accelerator.accumulate(model):
                    with accelerator.autocast():
                        pred, t_imp = model(noisy, timesteps, text_context, uncond_context, image_embeds,
                                            implicit_all[part], dropped_all[part])
                    mse = F.mse_loss(pred.float(), schedule.target(latents, noise, timesteps),
                                     reduction="none").mean(dim=(1, 2, 3))
                    if config.snr_gamma:
                        mse = mse * schedule.min_snr_weights(timesteps, config.snr_gamma)
                    has_caption = input_ids[:, 1] != eos  # an empty caption has nothing to align with
                    loss_cap = masked_captioner_loss(t_imp, pooled, has_caption, config.captioner_loss_weight)
                    loss_diff = mse.mean()
                    loss = loss_diff + loss_cap
                    accelerator.backward(loss)  # divided by the accumulation steps by accelerate
                    if accelerator.sync_gradients:
                        if config.max_grad_norm:
                            accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                        optimizer.step()
                        lr_scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                detached = torch.stack([loss_diff.detach(), loss_cap.detach()]) / accum
                sums += detached
                step_loss = detached.sum() if m == 0 else step_loss + detached.sum()
                if seen_log:
                    with seen_log.open("a") as fh:
                        epochs = batch["_pos"][:, 1].tolist()
                        fh.write("".join(f"{step + 1}\t{epoch}\t{key}\n" for key, epoch in zip(batch["key"], epochs)))
            if not accelerator.sync_gradients:  # cannot happen: accumulate() syncs every `accum` micro-steps
                raise RuntimeError("gradient accumulation out of step")
            if ema is not None:
                ema.step(trained_params)
            step += 1
            pending.append(step_loss)
            at_log = step % config.log_every == 0 or step == max_steps
            if at_log:
                flush(step)
            if on_step and accelerator.is_main_process:
                on_step(step, None)
            halt, by_time = should_stop_or_save() if (world == 1 or at_log) else (False, False)
            if halt:
                stopped = stop.received or "signal on another rank"
                break
            if step < max_steps and (step % config.checkpoint_every == 0 or by_time):
                checkpoint()
        flush(step)
        if saved_step != step and (save_at_end or stopped):  # every run ends with a checkpoint (same decision on every rank)
            checkpoint()
    elapsed = time.monotonic() - started
    bad_total = int(accelerator.reduce(torch.tensor(float(bad), device=device), "sum").item())
    if accelerator.is_main_process and stopped is None and save_at_end:
        export_pipeline(out, comps, unet, captioner, ema, step=step)
    accelerator.end_training()
    trained = step - start_step
    summary = {"out": str(out), "steps": step, "steps_this_run": trained,
               "resumed_from": start_step if resume else None,
               "loss_start": sum(losses.first) / max(1, len(losses.first)),
               "loss_end": sum(losses.last) / max(1, len(losses.last)),
               "max_steps": max_steps, "steps_per_epoch": steps_per_epoch, "world_size": world,
               "batch_size": config.batch_size, "gradient_accumulation_steps": accum,
               "global_batch": config.batch_size * accum * world, "num_workers": workers, "config": config_spec,
               "frozen_dtype": frozen, "prediction_type": schedule.prediction_type,
               "data_kind": source.kind, "bad_samples": bad_total, "seconds": round(elapsed, 2),
               "images_per_s": round(trained * config.batch_size * accum * world / elapsed, 2) if elapsed > 0 else None,
               "ema": config.use_ema, "tensorboard": str(out / "logs"),
               "checkpoint": str(last_checkpoint) if last_checkpoint else None, "stopped": stopped}
    if on_done is not None:
        on_done(summary)  # before this frame (and the DDP reducers it holds) is torn down
    return summary
