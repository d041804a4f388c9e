"""Stage 1 at scale (issue 28): the validated config, interrupts and checkpoints, export from any checkpoint,
the resume identity, gradient accumulation, v-prediction, the frozen-tower dtype switch, no process-wide
torchvision patching and no warnings."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from imdd_models.cli import app
from models.conftest import invoke
from models.test_cli_errors import _one_error_line

ROOT = Path(__file__).resolve().parents[2]
UNET = "diffusion_pytorch_model.safetensors"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _ckpt_weights(ckpt: Path) -> dict:
    out = {}
    for sub, name in (("unet", UNET), ("unet_ema", UNET), ("implicit_captioner", "model.safetensors"),
                      ("implicit_captioner_ema", "model.safetensors")):
        out.update({f"{sub}.{k}": v for k, v in load_file(str(ckpt / sub / name)).items()})
    return out


def _train(*args: str, expect: int = 0) -> dict:
    return invoke(app, "train-diffusion", *args, expect=expect)


def _common(data, components, out) -> list[str]:
    return ["--data", str(data), "--components", str(components), "--out", str(out)]


# ---- item 4: one validated config -------------------------------------------------------------------------------

def test_yaml_numbers_are_coerced(tmp_path):
    from imdd_models.diffusion.config import load_config
    config = tmp_path / "c.yaml"
    config.write_text("base: tiny\nlearning_rate: 1e-3\nbatch_size: '6'\ngradient_accumulation_steps: 2\n")
    loaded = load_config(str(config))
    assert loaded.learning_rate == 0.001 and isinstance(loaded.learning_rate, float)
    assert loaded.batch_size == 6 and loaded.gradient_accumulation_steps == 2


@pytest.mark.parametrize("body, field", [
    ("batch_size: four", "batch_size"),
    ("snr_gamma: -5", "snr_gamma"),
    ("ema_decay: 2", "ema_decay"),
    ("mixed_precision: bf17", "mixed_precision"),
    ("gradient_accumulation_steps: 0", "gradient_accumulation_steps"),
    ("learning_rat: 0.001", "unknown field learning_rat"),
])
def test_bad_config_values_are_one_error_line_and_exit_2(tmp_path, body, field):
    config = tmp_path / "bad.yaml"
    config.write_text(f"base: tiny\n{body}\n")
    result = CliRunner().invoke(app, ["train-diffusion", "--config", str(config), *_common(tmp_path, tmp_path,
                                                                                          tmp_path / "o"), "--json"])
    message = _one_error_line(result)
    assert message.startswith(f"{config}: ") and field in message, message
    assert not (tmp_path / "o").exists()


def test_the_components_preset_is_the_default_config_and_yaml_base(tiny_components, tmp_path):
    from imdd_models.diffusion.config import default_config, load_config
    assert default_config(tiny_components) == "tiny" and default_config(tmp_path) == "sd15"
    config = tmp_path / "no-base.yaml"
    config.write_text("learning_rate: 5e-4\n")
    loaded = load_config(str(config), default_base=default_config(tiny_components))
    assert (loaded.batch_size, loaded.num_workers, loaded.learning_rate) == (4, 0, 5e-4)


def test_every_components_preset_defaults_to_its_own_training_preset(tmp_path):
    """A `small` components folder trains with `small` (not sd15's batch and schedule) when --config is left out."""
    from imdd_models.components.presets import PRESETS
    from imdd_models.diffusion.config import PRESET_OVERRIDES, default_config
    for name in PRESETS:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "components.json").write_text(json.dumps({"preset": name}))
        chosen = default_config(folder)
        assert chosen in PRESET_OVERRIDES, (name, chosen)
        if name in PRESET_OVERRIDES:
            assert chosen == name, (name, chosen)


def test_loader_workers_are_capped_by_the_cores():
    from imdd_models.diffusion.train import loader_workers
    cores = len(os.sched_getaffinity(0))
    assert loader_workers(10_000) == cores and loader_workers(0) == 0
    assert loader_workers(10_000, local_processes=cores * 2) == 1


def test_default_config_is_the_components_preset_and_a_normal_run_prints_no_warning(demo_latents,
                                                                                     tiny_components, tmp_path):
    # In a fresh process: `import imdd_models` patches nothing, and a whole run (components loaded, the
    # pipeline exported) says nothing about torchvision.
    code = "import sys, imdd_models; assert sys.modules.get('torchvision', 0) == 0, 'torchvision patched'"
    subprocess.run([sys.executable, "-c", code], env=ENV, check=True, timeout=120)
    done = subprocess.run([sys.executable, "-m", "imdd_models", "train-diffusion",
                           *_common(demo_latents, tiny_components, tmp_path / "run"), "--max-steps", "2", "--json"],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "torchvision" not in done.stderr and "warn" not in done.stderr.lower(), done.stderr
    noise = [line for line in done.stderr.splitlines() if line.strip() and "train-diffusion" not in line]
    assert not noise, noise  # the progress bar only (no "requires torchvision", no dtype-cast notices)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["config"] == "tiny" and summary["batch_size"] == 4  # not sd15's 32 x 8 workers


# ---- item 3: interrupts, checkpoints, export, identity -----------------------------------------------------------

@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_a_checkpoint_and_resuming_equals_an_uninterrupted_run(demo_latents, tiny_components,
                                                                              tmp_path, sig, code):
    out = tmp_path / "stopped"
    cmd = [sys.executable, "-m", "imdd_models", "train-diffusion", "--config", "tiny",
           *_common(demo_latents, tiny_components, out), "--max-steps", "100000", "--log-keys", "--json"]
    # Ctrl-C as a terminal sends it: SIGINT at its default, even when pytest runs from a background shell job
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = out / "seen" / "rank-0.txt"
    deadline = time.monotonic() + 240
    while not (seen.is_file() and len(seen.read_text().splitlines()) >= 3 * 4):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr[-3000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    stopped_at = summary["steps"]
    assert summary["stopped"] == sig.name and stopped_at >= 3
    ckpt = out / "checkpoints" / f"step-{stopped_at:08d}"
    assert summary["checkpoint"] == str(ckpt) and "--resume" in summary["resume_command"]
    assert str(ckpt) in stderr and "resume with: imdd-models train-diffusion" in stderr
    for sub in ("unet", "unet_ema", "implicit_captioner", "implicit_captioner_ema"):
        assert (ckpt / sub / "config.json").is_file(), sub
    if sig == signal.SIGTERM:
        return  # the same path; the resume below is checked once
    from diffusers import UNet2DConditionModel
    assert UNet2DConditionModel.from_pretrained(str(ckpt / "unet_ema")).config.sample_size == 8
    end = stopped_at + 3
    resumed = _train("--config", "tiny", *_common(demo_latents, tiny_components, out), "--max-steps", str(end),
                     "--resume")
    straight = _train("--config", "tiny", *_common(demo_latents, tiny_components, tmp_path / "straight"),
                      "--max-steps", str(end))
    assert resumed["resumed_from"] == stopped_at and resumed["loss_end"] == straight["loss_end"]
    a = _ckpt_weights(out / "checkpoints" / f"step-{end:08d}")
    b = _ckpt_weights(tmp_path / "straight" / "checkpoints" / f"step-{end:08d}")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_save_every_writes_checkpoints_on_the_cli(demo_latents, tiny_components, tmp_path):
    out = tmp_path / "every"
    _train("--config", "tiny", *_common(demo_latents, tiny_components, out), "--max-steps", "4", "--save-every",
           "2", "--save-every-minutes", "0")
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]
    timed = tmp_path / "timed"  # every 6 ms: a checkpoint after each step (tiny keeps the newest 2)
    _train("--config", "tiny", *_common(demo_latents, tiny_components, timed), "--max-steps", "3",
           "--save-every-minutes", "0.0001")
    assert sorted(p.name for p in (timed / "checkpoints").iterdir()) == ["step-00000002", "step-00000003"]


def test_export_writes_a_pipeline_folder_from_any_checkpoint(trained_run, tmp_path):
    from diffusers import StableDiffusionPipeline

    from imdd_models.components import ImplicitCaptioner
    run, _ = trained_run
    latest = invoke(app, "export", "--run", str(run), "--out", str(tmp_path / "latest"))
    assert latest["step"] == 40 and latest["weights"] == "ema"
    pipe = StableDiffusionPipeline.from_pretrained(str(tmp_path / "latest"), safety_checker=None,
                                                   requires_safety_checker=False)
    ema = load_file(str(run / "checkpoints" / "step-00000040" / "unet_ema" / UNET))
    assert all(torch.equal(v, ema[k]) for k, v in pipe.unet.state_dict().items())
    captioner = ImplicitCaptioner.from_pretrained(tmp_path / "latest" / "implicit_captioner")
    cap_ema = load_file(str(run / "checkpoints" / "step-00000040" / "implicit_captioner_ema" / "model.safetensors"))
    assert all(torch.equal(v, cap_ema[k]) for k, v in captioner.state_dict().items())
    # Like with like: the run's own final export is the same EMA pair.
    final = ImplicitCaptioner.from_pretrained(run / "implicit_captioner")
    assert all(torch.equal(v, cap_ema[k]) for k, v in final.state_dict().items())
    raw = invoke(app, "export", "--run", str(run), "--step", "40", "--raw", "--out", str(tmp_path / "raw"))
    assert raw["weights"] == "raw"
    missing = CliRunner().invoke(app, ["export", "--run", str(run), "--step", "7", "--out", str(tmp_path / "x"),
                                       "--json"])
    assert "no checkpoint of step 7" in _one_error_line(missing)


@pytest.mark.parametrize("change, named", [
    (["--config", "BATCH2"], "batch_size"),
    (["--config", "ACCUM2"], "gradient_accumulation_steps"),
    (["--config", "BUFFER"], "shuffle_buffer"),
    (["--seed", "5"], "seed"),
    (["--split", "train"], "split"),
])
def test_resume_refuses_changed_settings(demo_latents, tiny_components, tmp_path, change, named):
    out = tmp_path / "run"
    _train("--config", "tiny", *_common(demo_latents, tiny_components, out), "--max-steps", "1")
    presets = {"BATCH2": "batch_size: 2", "ACCUM2": "gradient_accumulation_steps: 2", "BUFFER": "shuffle_buffer: 3"}
    change = list(change)
    if change[0] == "--config":
        (tmp_path / "c.yaml").write_text(f"base: tiny\n{presets[change[1]]}\n")
        change[1] = str(tmp_path / "c.yaml")
    args = change if change[0] == "--config" else ["--config", "tiny", *change]
    result = CliRunner().invoke(app, ["train-diffusion", *args, *_common(demo_latents, tiny_components, out),
                                      "--max-steps", "2", "--resume", "--json"])
    message = _one_error_line(result)
    assert "different settings" in message and named in message, message


# ---- item 5: accumulation, v-prediction, frozen dtype -----------------------------------------------------------

def test_accumulation_2_x_batch_2_equals_batch_4(demo_latents, tiny_components, tmp_path):
    runs = {}
    for name, body in (("b4", "batch_size: 4\n"), ("b2x2", "batch_size: 2\ngradient_accumulation_steps: 2\n")):
        config = tmp_path / f"{name}.yaml"
        config.write_text(f"base: tiny\n{body}")
        runs[name] = _train("--config", str(config), *_common(demo_latents, tiny_components, tmp_path / name),
                            "--max-steps", "3")
    assert runs["b2x2"]["global_batch"] == runs["b4"]["global_batch"] == 4
    a = _ckpt_weights(tmp_path / "b4" / "checkpoints" / "step-00000003")
    b = _ckpt_weights(tmp_path / "b2x2" / "checkpoints" / "step-00000003")
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-4, worst
    assert abs(runs["b4"]["loss_end"] - runs["b2x2"]["loss_end"]) < 1e-5


def test_resume_with_accumulation_is_exact(demo_latents, tiny_components, tmp_path):
    config = tmp_path / "acc.yaml"
    config.write_text("base: tiny\nbatch_size: 2\ngradient_accumulation_steps: 3\n")
    for name, legs in (("straight", ["4"]), ("resumed", ["2", "4"])):
        for i, steps in enumerate(legs):
            _train("--config", str(config), *_common(demo_latents, tiny_components, tmp_path / name), "--max-steps",
                   steps, *(["--resume"] if i else []))
    a = _ckpt_weights(tmp_path / "straight" / "checkpoints" / "step-00000004")
    b = _ckpt_weights(tmp_path / "resumed" / "checkpoints" / "step-00000004")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def v_components(tiny_components, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("vpred") / "tiny-v"
    shutil.copytree(tiny_components, out)
    path = out / "scheduler" / "scheduler_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "prediction_type": "v_prediction"}))
    return out


def test_v_prediction_target_and_min_snr_follow_the_scheduler(v_components):
    from diffusers import DDPMScheduler
    from diffusers.training_utils import compute_snr

    from imdd_models.diffusion.objective import NoiseSchedule
    scheduler = DDPMScheduler.from_pretrained(str(v_components / "scheduler"))
    schedule = NoiseSchedule(scheduler, torch.device("cpu"))
    assert schedule.prediction_type == "v_prediction"
    gen = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(5, 4, 8, 8, generator=gen), torch.randn(5, 4, 8, 8, generator=gen)
    t = torch.tensor([0, 10, 250, 600, 999])
    assert torch.allclose(schedule.target(latents, noise, t), scheduler.get_velocity(latents, noise, t), atol=1e-6)
    assert torch.allclose(schedule.add_noise(latents, noise, t), scheduler.add_noise(latents, noise, t), atol=1e-6)
    snr = compute_snr(scheduler, t)
    assert torch.allclose(schedule.min_snr_weights(t, 5.0), torch.clamp(snr, max=5.0) / (snr + 1))
    eps = NoiseSchedule(DDPMScheduler.from_config({**scheduler.config, "prediction_type": "epsilon"}),
                        torch.device("cpu"))
    assert torch.equal(eps.target(latents, noise, t), noise)
    assert torch.allclose(eps.min_snr_weights(t, 5.0), torch.clamp(snr, max=5.0) / snr)


def test_v_prediction_run_with_min_snr_learns(demo_latents, v_components, tmp_path):
    config = tmp_path / "v.yaml"
    config.write_text("base: tiny\nsnr_gamma: 5.0\n")
    summary = _train("--config", str(config), *_common(demo_latents, v_components, tmp_path / "v"), "--max-steps",
                     "30")
    assert summary["prediction_type"] == "v_prediction"
    assert summary["loss_end"] < summary["loss_start"], summary


def test_frozen_towers_in_the_mixed_precision_dtype_switch(demo_shards, tiny_components, tmp_path):
    # The GPU path (frozen VAE and CLIP towers in bf16 feeding an fp32 U-Net) run on the CPU by the switch.
    config = tmp_path / "bf16.yaml"
    config.write_text("base: tiny\nfrozen_dtype: bf16\n")
    summary = _train("--config", str(config), *_common(demo_shards, tiny_components, tmp_path / "bf16"),
                     "--max-steps", "2", "--split", "train")
    assert summary["frozen_dtype"] == "bf16" and summary["data_kind"] == "images" and summary["steps"] == 2


# ---- item 7: one loader ---------------------------------------------------------------------------------------

def test_segmentation_features_load_through_the_components_loader():
    import inspect

    from imdd_models.segmentation import features
    source = inspect.getsource(features.DiffusionFeatureExtractor.from_folder)
    assert "load_parts(" in source and ".from_pretrained(" not in source


def test_no_per_step_collective_or_loss_readback(demo_latents, tiny_components, tmp_path, monkeypatch):
    # Host syncs of the old step: an all-reduce of the bad count and of the loss, each step, read back with
    # float(). Now losses and counts stay on the device and are reduced at log points (tiny: every 5 steps).
    from accelerate import Accelerator
    calls = []
    real_reduce = Accelerator.reduce

    def counting_reduce(self, tensor, *args, **kwargs):
        calls.append(tuple(tensor.shape))
        return real_reduce(self, tensor, *args, **kwargs)

    monkeypatch.setattr(Accelerator, "reduce", counting_reduce)
    summary = _train("--config", "tiny", *_common(demo_latents, tiny_components, tmp_path / "r"), "--max-steps", "10")
    assert summary["steps"] == 10
    # 2 log points x (per-step losses + loss parts) + the bad-sample count at the end
    assert len(calls) == 5, calls
    assert (5,) in calls  # the 5 losses of a log interval in one reduction


def test_ctrl_c_under_torchrun_stops_every_rank_at_the_same_step_with_a_checkpoint(demo_latents, tiny_components,
                                                                                     tmp_path):
    # A terminal's Ctrl-C reaches the whole process group: torchrun and both workers. The ranks agree at the
    # next log point (tiny: every 5 steps), write one checkpoint and rank 0 prints the --json line.
    import socket
    out = tmp_path / "ddp"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
           "-m", "imdd_models", "train-diffusion", "--config", "tiny", *_common(demo_latents, tiny_components, out),
           "--max-steps", "100000", "--log-keys", "--json"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: (os.setpgrp(), signal.signal(signal.SIGINT, signal.SIG_DFL)))
    seen = out / "seen" / "rank-1.txt"
    deadline = time.monotonic() + 300
    while not (seen.is_file() and len(seen.read_text().splitlines()) >= 2 * 4):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=240)
    summary = json.loads(stdout.strip().splitlines()[-1])  # torchrun itself then exits 1 with its own traceback
    assert summary["stopped"] == "SIGINT" and summary["world_size"] == 2, stderr[-3000:]
    assert summary["steps"] % 5 == 0 and summary["steps"] >= 5
    ckpt = out / "checkpoints" / f"step-{summary['steps']:08d}"
    assert [p.name for p in (out / "checkpoints").iterdir()] == [ckpt.name]
    state = json.loads((ckpt / "state.json").read_text())
    assert state["step"] == summary["steps"] and len(state["generators"]) == 2
    for rank in (0, 1):  # both ranks trained exactly up to the checkpoint
        steps = {int(line.split("\t")[0]) for line in (out / "seen" / f"rank-{rank}.txt").read_text().splitlines()}
        assert max(steps) == summary["steps"]


def test_a_checkpoint_of_the_earlier_flat_layout_still_resumes(demo_latents, tiny_components, tmp_path):
    out = tmp_path / "old"
    _train("--config", "tiny", *_common(demo_latents, tiny_components, out), "--max-steps", "2")
    ckpt = out / "checkpoints" / "step-00000002"
    state = json.loads((ckpt / "state.json").read_text())
    unet = load_file(str(ckpt / "unet" / UNET))
    unet_ema = load_file(str(ckpt / "unet_ema" / UNET))
    from diffusers import UNet2DConditionModel
    names = [n for n, _ in UNet2DConditionModel.from_pretrained(str(ckpt / "unet")).named_parameters()]
    torch.save({**state["ema"], "shadow_params": [unet_ema[n] for n in names]}, ckpt / "ema.pt")  # the U-Net only
    from safetensors.torch import save_file
    save_file(unet, str(ckpt / "unet.safetensors"))
    save_file(load_file(str(ckpt / "implicit_captioner" / "model.safetensors")), str(ckpt / "captioner.safetensors"))
    for sub in ("unet", "unet_ema", "implicit_captioner", "implicit_captioner_ema"):
        shutil.rmtree(ckpt / sub)
    old_state = {k: v for k, v in state.items() if k not in ("run", "ema", "bad_per_rank")}
    (ckpt / "state.json").write_text(json.dumps(old_state))
    resumed = _train("--config", "tiny", *_common(demo_latents, tiny_components, out), "--max-steps", "3",
                     "--resume")
    assert resumed["resumed_from"] == 2 and resumed["steps"] == 3
    assert (out / "checkpoints" / "step-00000003" / "unet_ema" / UNET).is_file()
