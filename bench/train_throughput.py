"""Stage-1 training throughput (images/s per GPU): the full imdd training step vs a plain diffusers step.

    python bench/train_throughput.py [--preset sd15-random] [--batch-size 32] [--steps 30] [--warmup 10]
                                     [--compile] [--samples 2048] [--json-out FILE]
    python bench/train_throughput.py --preset tiny --batch-size 4 --steps 3 --warmup 1 --samples 64   # CPU smoke

Both measurements run in this process, one after the other, on the same device:

  baseline: a plain diffusers step: `UNet2DConditionModel` (the preset's config), random latents and
            random 77-token contexts already on the device, noise + timesteps + add_noise, MSE,
            backward, fused AdamW; bf16 autocast and channels_last on GPU; `torch.compile` with --compile.
  imdd:     `train_diffusion` itself: latent shards written here in the `imdd-models precompute`
            format (random latents: no VAE time, as with real precomputed shards) read through the real
            loader (ShardStream + DataLoader workers), CLIP text encoder online, implicit captioner with
            the p=0.5 switch and cosine loss, caption dropout, EMA, gradient clipping, loss reduction.

Steps after --warmup are timed (compilation and loader start-up excluded). The paper's implied rate is
1.24 M images x 100 epochs / (72 h x 8 GPUs) = 59.8 img/s per GPU; the target is >= 200 img/s per GPU.
Components use random weights of the real shapes (`--preset sd15-random`): throughput does not depend
on the values, and the GPU machine has no network.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from imdd_models import hf_ready  # noqa: E402

hf_ready()  # transformers/diffusers importable beside a torchvision that cannot load

PAPER_IMG_S = 1.24e6 * 100 / (72 * 3600 * 8)
TARGET_IMG_S = 200.0


def write_latent_shards(comps_dir: Path, out: Path, samples: int, shard_size: int = 512) -> Path:
    """Random latents in the precompute format (latents.json + latents/all-*.parquet)."""
    from imdd_models.components import load_components
    from imdd_models.data.sources import LATENT_MANIFEST
    from imdd_models.diffusion.precompute import FORMAT_VERSION, SCHEMA

    manifest = json.loads((comps_dir / "components.json").read_text())
    res, factor = manifest["resolution"], manifest["vae_scale_factor"]
    shape = [manifest["latent_channels"], res // factor, res // factor]
    tokenizer = load_components(comps_dir).tokenizer
    ids = tokenizer(["an industrial inspection image of a metal plate with a scratch in the upper left"],
                    padding="max_length", max_length=77, truncation=True).input_ids[0]
    rng = np.random.default_rng(0)
    (out / "latents").mkdir(parents=True, exist_ok=True)
    for start in range(0, samples, shard_size):
        n = min(shard_size, samples - start)
        rows = [{"key": f"bench/{start + i:07d}", "caption": "bench",
                 "latent": rng.standard_normal(shape, dtype=np.float32).astype(np.float16).tobytes(),
                 "latent_flip": None, "latent_shape": shape,
                 "image_embed": rng.standard_normal(manifest["image_embed_dim"]).astype(np.float16).tobytes(),
                 "input_ids": ids} for i in range(n)]
        path = out / "latents" / f"all-{start // shard_size:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
    (out / LATENT_MANIFEST).write_text(json.dumps({"format_version": FORMAT_VERSION, "samples": samples,
                                                   "resolution": res, "components": manifest, "complete": True}))
    return out


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def baseline_step_rate(unet_config: dict, context_dim: int, batch: int, steps: int, warmup: int, compile_: bool,
                       device: str) -> float:
    """Images/s of a plain diffusers U-Net training step (the same-run baseline)."""
    from diffusers import DDPMScheduler, UNet2DConditionModel

    from imdd_models.components import SD_SCHEDULER
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(unet_config).to(device).train()
    gpu = device == "cuda"
    if gpu:
        unet = unet.to(memory_format=torch.channels_last)
    step_unet = torch.compile(unet) if compile_ else unet
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, fused=gpu)
    scheduler = DDPMScheduler(**SD_SCHEDULER)
    size = unet_config["sample_size"]
    latents = torch.randn(batch, 4, size, size, device=device)
    context = torch.randn(batch, 77, context_dim, device=device)
    timer = None
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            timer = time.perf_counter()
        noise = torch.randn_like(latents)
        t = torch.randint(0, 1000, (batch,), device=device)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=gpu):
            pred = step_unet(scheduler.add_noise(latents, noise, t), t, encoder_hidden_states=context).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
    _sync(device)
    return batch * steps / (time.perf_counter() - timer)


def imdd_step_rate(comps_dir: Path, latents: Path, out: Path, batch: int, steps: int, warmup: int, compile_: bool,
                   workers: int) -> tuple[float, dict]:
    """Images/s of `train_diffusion` on precomputed latent shards, steps after `warmup` timed."""
    from imdd_models.diffusion.train import train_diffusion

    config = out.parent / "bench-config.yaml"
    config.write_text(f"base: sd15\nbatch_size: {batch}\ncompile: {str(compile_).lower()}\nnum_workers: {workers}\n"
                      f"checkpoint_every: 1000000\nlog_every: 1000000\nshuffle_buffer: 256\nwarmup_steps: 0\n")
    times = {}
    summary = train_diffusion(str(config), str(latents), comps_dir, out, max_steps=warmup + steps,
                              on_step=lambda step, loss: times.__setitem__(step, time.perf_counter()))
    return batch * steps / (times[warmup + steps] - times[warmup]), summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sd15-random", help="components preset (sd15-random, tiny)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--samples", type=int, default=2048, help="latent samples written for the loader")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers of the imdd run")
    parser.add_argument("--compile", action="store_true", help="torch.compile the U-Net (both runs)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()

    from imdd_models.components import write_components
    device = "cuda" if torch.cuda.is_available() else "cpu"
    work = Path(tempfile.mkdtemp(prefix="imdd-train-bench-"))
    comps_dir = work / "components"
    write_components(args.preset, comps_dir)
    unet_config = json.loads((comps_dir / "unet" / "config.json").read_text())
    latents = write_latent_shards(comps_dir, work / "latents", args.samples)
    rows = []
    if not args.no_baseline:
        rate = baseline_step_rate(unet_config, unet_config["cross_attention_dim"], args.batch_size, args.steps,
                                  args.warmup, args.compile, device)
        rows.append(("diffusers U-Net step (baseline)" + (", compiled" if args.compile else ""), rate))
    rate, summary = imdd_step_rate(comps_dir, latents, work / "run", args.batch_size, args.steps, args.warmup,
                                   args.compile, args.workers)
    rows.append(("imdd train-diffusion full step, precomputed latents", rate))
    rows.append(("paper implied (72 h x 8 GPUs, 100 epochs of 1.24 M)", PAPER_IMG_S))
    rows.append(("target", TARGET_IMG_S))
    device_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"\n{args.preset}, batch {args.batch_size}, {args.steps} timed steps after {args.warmup}, {device_name}")
    print(f"{'what':58} {'img/s':>9}")
    for name, value in rows:
        print(f"{name:58} {value:9.1f}")
    result = {"preset": args.preset, "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
              "compile": args.compile, "device": device_name, "rows": {name: value for name, value in rows},
              "imdd_vs_baseline": rate / rows[0][1] if not args.no_baseline else None,
              "imdd_vs_paper": rate / PAPER_IMG_S, "imdd_vs_target": rate / TARGET_IMG_S,
              "train_summary": summary}
    for key in ("imdd_vs_baseline", "imdd_vs_paper", "imdd_vs_target"):
        if result[key] is not None:
            print(f"{key:58} {result[key]:8.2f}x")
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
