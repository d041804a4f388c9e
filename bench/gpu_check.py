"""One prepared GPU check (issue 28 item 8): every throughput that matters for a run at scale, in one process,
printed as ONE JSON object (the last line of stdout; progress on stderr).

    bash bench/gpu_check.sh                 # one H100: <= 8 minutes
    bash bench/gpu_check.sh --smoke         # CPU, tiny sizes, seconds (also IMDD_GPU_CHECK_SMOKE=1)

Measured, each beside what it is compared with in the same run, with the peak GPU memory of each:

  stage1_eager:     `train_diffusion` full step (sd15-random components, bf16, precomputed latents read through
                    the real loader, CLIP text tower online, captioner, EMA, clipping), batch 32, eager,
                    vs the plain diffusers U-Net step at the same batch (`bench/train_throughput.py`'s baseline)
  stage1_compiled:  the same at batch 64 with torch.compile (both sides compiled); the plain step at 64 peaked at
                    77.4 GiB of 80 (gpu-baseline.md), so EMA's fp32 copy (3.4 GB) may not fit: on out-of-memory
                    the section is measured again without EMA and says so (`ema`, `oom_with_ema`)
  precompute:       `precompute` img/s (512x512 image shards -> VAE latents + CLIP image embeddings)
  stage2_train:     `train-seg --config paper` samples/s on frozen sd15-random features (bf16)
  stage2_predict:   `predict` images/s with that model
Timed steps exclude warmup (compilation, loader start-up); a section that fails reports its error and the others
still run. Random weights of the real shapes: throughput does not depend on the values, the GPU machine has no
network. Targets (issue 28): full step >= 200 img/s and >= the compiled diffusers step; precompute >= 120 img/s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

from imdd_models import hf_ready  # noqa: E402

hf_ready()

PAPER_IMG_S = 1.24e6 * 100 / (72 * 3600 * 8)
TARGETS = {"stage1_img_s": 200.0, "stage1_vs_compiled_diffusers": 1.0, "precompute_img_s": 120.0}
SECTIONS = ("stage1_eager", "stage1_compiled", "precompute", "stage2_train", "stage2_predict")
SECTION_KEYS = {
    "stage1_eager": ("batch", "compile", "imdd_img_s", "diffusers_img_s", "ratio", "imdd_peak_gib",
                     "diffusers_peak_gib", "ema", "oom_with_ema"),
    "stage1_compiled": ("batch", "compile", "imdd_img_s", "diffusers_img_s", "ratio", "imdd_peak_gib",
                        "diffusers_peak_gib", "ema", "oom_with_ema"),
    "precompute": ("images", "img_s", "peak_gib"),
    "stage2_train": ("config", "batch", "steps", "samples_s", "peak_gib"),
    "stage2_predict": ("images", "images_s", "peak_gib"),
}

# Sizes: the real check, and the CPU smoke run (every code path, tiny shapes).
FULL = {"preset": "sd15-random", "eager_batch": 32, "compiled_batch": 64, "compile": True, "steps": 12,
        "warmup": 4, "samples": 1024, "workers": 8, "precompute_images": 1024, "precompute_batch": 32,
        "seg_config": "paper", "seg_steps": 20, "seg_warmup": 3, "predict_images": 32}
SMOKE = {"preset": "tiny", "eager_batch": 2, "compiled_batch": 4, "compile": False, "steps": 2, "warmup": 1,
         "samples": 16, "workers": 0, "precompute_images": 8, "precompute_batch": 4,
         "seg_config": "tiny", "seg_steps": 3, "seg_warmup": 1, "predict_images": 4}


def log(message: str) -> None:
    print(f"[gpu_check] {message}", file=sys.stderr, flush=True)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak(device: str) -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None


def _reset_accelerate() -> None:
    """Each section builds its own Accelerator (stage 1 and stage 2 differ): forget the previous one."""
    try:
        from accelerate.state import AcceleratorState, GradientState, PartialState
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
        PartialState._reset_state()
    except Exception:  # noqa: BLE001  (older accelerate: nothing to reset)
        pass


def _rate(times: dict, first: int, last: int, per_step: int) -> float:
    return round(per_step * (last - first) / (times[last] - times[first]), 2)


def stage1(comps_dir: Path, latents: Path, work: Path, batch: int, compile_: bool, sizes: dict, device: str) -> dict:
    """The imdd full step and the plain diffusers step, same batch, same compile setting."""
    from train_throughput import baseline_step_rate

    from imdd_models.diffusion.train import train_diffusion

    unet_config = json.loads((comps_dir / "unet" / "config.json").read_text())
    _reset_peak(device)
    plain = baseline_step_rate(unet_config, unet_config["cross_attention_dim"], batch, sizes["steps"],
                               sizes["warmup"], compile_, device)
    plain_peak = _peak(device)
    last = sizes["warmup"] + sizes["steps"]
    times: dict[int, float] = {}

    def on_step(step: int, _loss) -> None:
        if step in (sizes["warmup"], last):  # only there: a sync per step would stall the queued GPU work
            _sync(device)
            times[step] = time.perf_counter()

    def run(ema: bool) -> None:
        _reset_peak(device)
        _reset_accelerate()
        times.clear()
        config = work / f"stage1-{batch}-{int(compile_)}-{int(ema)}.yaml"
        config.write_text(f"base: sd15\nbatch_size: {batch}\ncompile: {str(compile_).lower()}\n"
                          f"num_workers: {sizes['workers']}\ncheckpoint_every: 1000000\n"
                          f"checkpoint_every_minutes: 0\nlog_every: 1000000\nshuffle_buffer: 256\nwarmup_steps: 0\n"
                          f"use_ema: {str(ema).lower()}\n")
        train_diffusion(str(config), str(latents), comps_dir, work / f"run-{batch}-{int(compile_)}-{int(ema)}",
                        max_steps=last, on_step=on_step, save_at_end=False)

    ema, oom = True, None
    try:
        run(ema=True)
    except torch.cuda.OutOfMemoryError as exc:  # batch 64 compiled is at the card's limit without EMA's 3.4 GB
        oom = str(exc).splitlines()[0][:200]
    if oom is not None:  # outside the except block: the failed run's frames (and GPU tensors) are gone by now
        log(f"out of memory with EMA ({oom}); measuring again without EMA")
        import gc
        gc.collect()
        ema = False
        run(ema=False)
    imdd = _rate(times, sizes["warmup"], last, batch)
    return {"batch": batch, "compile": compile_, "imdd_img_s": imdd, "diffusers_img_s": round(plain, 2),
            "ratio": round(imdd / plain, 3), "imdd_peak_gib": _peak(device), "diffusers_peak_gib": plain_peak,
            "ema": ema, "oom_with_ema": oom}


def image_shards(demo: Path, out: Path, n: int) -> Path:
    """n image records (the demo shards' rows repeated under new keys) as an imdd shard folder (data/*.parquet)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    tables = [pq.read_table(p) for p in sorted((demo / "data").rglob("*.parquet"))]
    table = pa.concat_tables(tables, promote_options="default")
    rows = [table.slice(i % table.num_rows, 1) for i in range(n)]
    tiled = pa.concat_tables(rows)
    keys = pa.array([f"bench/{i:07d}" for i in range(n)])
    tiled = tiled.set_column(tiled.schema.get_field_index("key"), "key", keys)
    (out / "data").mkdir(parents=True, exist_ok=True)
    for start in range(0, n, 512):
        pq.write_table(tiled.slice(start, 512), out / "data" / f"train-{start // 512:05d}.parquet")
    return out


def precompute_rate(images: Path, comps_dir: Path, out: Path, sizes: dict, device: str) -> dict:
    from imdd_models.diffusion.precompute import precompute
    times: list[float] = []
    done = [0]

    def advance(k: int = 1) -> None:
        _sync(device)
        done[0] += k
        times.append((done[0], time.perf_counter()))

    _reset_peak(device)
    precompute(str(images), comps_dir, out, batch_size=sizes["precompute_batch"], device=device,
               on_advance=advance)
    # Time from the first batch done to the last (model loading and the first batch's warmup excluded).
    (n0, t0), (n1, t1) = times[0], times[-1]
    return {"images": done[0], "img_s": round((n1 - n0) / (t1 - t0), 2) if t1 > t0 else None,
            "peak_gib": _peak(device)}


def stage1_folder(comps_dir: Path, out: Path) -> Path:
    """A stage-1 model folder of random weights (the pipeline layout train-diffusion writes)."""
    from imdd_models.components import load_components
    from imdd_models.diffusion.export import write_pipeline
    comps = load_components(comps_dir)
    torch.manual_seed(0)
    return write_pipeline(out, comps, comps.new_unet(), comps.new_captioner(), "raw")


def stage2(diffusion: Path, demo: Path, work: Path, sizes: dict, device: str) -> tuple[dict, dict]:
    from imdd_models.segmentation.predict import predict
    from imdd_models.segmentation.train import TrainOptions, train_seg

    _reset_accelerate()
    _reset_peak(device)
    times: dict[int, float] = {}
    precision = "bf16" if device == "cuda" else "no"
    last = sizes["seg_warmup"] + sizes["seg_steps"]

    def progress(step: int, _total: int) -> None:
        if step in (sizes["seg_warmup"], last):
            _sync(device)
            times[step] = time.perf_counter()

    opts = TrainOptions(diffusion=diffusion, data=str(demo), config=sizes["seg_config"], out=work / "seg",
                        max_steps=last, split=None, save_every=10**9, mixed_precision=precision)
    summary = train_seg(opts, progress=progress)
    batch = json.loads((work / "seg" / "seg_config.json").read_text()).get("train", {}).get("batch_size")
    if batch is None:
        from imdd_models.segmentation.config import get_config
        batch = get_config(sizes["seg_config"])["batch_size"]
    train = {"config": sizes["seg_config"], "batch": batch, "steps": summary["steps"],
             "samples_s": _rate(times, sizes["seg_warmup"], last, batch), "peak_gib": _peak(device)}
    _reset_peak(device)
    stamps: list[float] = []

    def tick(*_args) -> None:
        _sync(device)
        stamps.append(time.perf_counter())

    n = sizes["predict_images"]
    predict(work / "seg", "scratch,crack,hole,dent", work / "pred", data=str(demo), limit=n, progress=tick)
    # The first image carries the model load; the rest are timed.
    rate = round((len(stamps) - 1) / (stamps[-1] - stamps[0]), 2) if len(stamps) > 1 else None
    return train, {"images": len(stamps), "images_s": rate, "peak_gib": _peak(device)}


def build_demo(work: Path) -> Path:
    from typer.testing import CliRunner

    from imdd_build.cli import app
    out = work / "demo-shards"
    result = CliRunner().invoke(app, ["--workspace", str(work / "build-ws"), "demo", "--out", str(out),
                                      "--workers", "1", "--json"])
    if result.exit_code != 0:
        raise RuntimeError(f"imdd-build demo failed: {result.output[-500:]}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on any device (CPU: seconds)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temporary one)")
    args = parser.parse_args()
    smoke = args.smoke or os.environ.get("IMDD_GPU_CHECK_SMOKE", "") not in ("", "0")
    sizes = SMOKE if smoke else FULL
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    started = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="imdd-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "gpu": device == "cuda",
                    "smoke": smoke, "torch": torch.__version__, "preset": sizes["preset"], "errors": {},
                    "paper_implied_img_s": round(PAPER_IMG_S, 1), "targets": TARGETS}
    for name in SECTIONS:
        result[name] = None

    def section(name: str, fn):
        log(f"{name} ...")
        t0 = time.perf_counter()
        try:
            value = fn()
            log(f"{name}: {value} ({time.perf_counter() - t0:.1f} s)")
            return value
        except Exception as exc:  # noqa: BLE001  (report and go on: one failing part must not hide the rest)
            result["errors"][name] = f"{type(exc).__name__}: {exc}"[:500]
            traceback.print_exc(file=sys.stderr)
            return None

    from imdd_models.components import write_components
    from train_throughput import write_latent_shards

    comps_dir = work / "components"
    write_components(sizes["preset"], comps_dir)
    latents = write_latent_shards(comps_dir, work / "latents", sizes["samples"])
    demo = section("demo_shards", lambda: build_demo(work))
    result["stage1_eager"] = section("stage1_eager", lambda: stage1(comps_dir, latents, work, sizes["eager_batch"],
                                                                    False, sizes, device))
    result["stage1_compiled"] = section("stage1_compiled", lambda: stage1(
        comps_dir, latents, work, sizes["compiled_batch"], sizes["compile"], sizes, device))
    if demo is not None:
        images = section("image_shards", lambda: image_shards(demo, work / "images", sizes["precompute_images"]))
        if images is not None:
            result["precompute"] = section("precompute", lambda: precompute_rate(images, comps_dir,
                                                                               work / "precomputed", sizes, device))
        folder = section("stage1_folder", lambda: stage1_folder(comps_dir, work / "stage1-model"))
        if folder is not None:
            both = section("stage2", lambda: stage2(folder, demo, work, sizes, device))
            if both is not None:
                result["stage2_train"], result["stage2_predict"] = both
    best = max((s["imdd_img_s"] for s in (result["stage1_eager"], result["stage1_compiled"]) if s), default=None)
    compiled = result["stage1_compiled"]
    result["verdict"] = {
        "stage1_img_s_target_met": None if best is None else best >= TARGETS["stage1_img_s"],
        "stage1_beats_compiled_diffusers": None if not compiled else compiled["ratio"] >= 1.0,
        "precompute_target_met": (None if not result["precompute"] or result["precompute"]["img_s"] is None
                                  else result["precompute"]["img_s"] >= TARGETS["precompute_img_s"]),
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, sort_keys=True, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
