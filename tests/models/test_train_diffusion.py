"""train-diffusion: the loss falls, a stopped and resumed run equals an uninterrupted one, DDP over gloo; a resume
or latents that would not continue the same run are refused."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from models.conftest import invoke
from imdd_models.cli import app

ROOT = Path(__file__).resolve().parents[2]
UNET = "diffusion_pytorch_model.safetensors"


def _weights(run: Path, step: int) -> dict:
    ckpt = run / "checkpoints" / f"step-{step:08d}"
    return {**{f"unet.{k}": v for k, v in load_file(str(ckpt / "unet" / UNET)).items()},
            **{f"cap.{k}": v for k, v in load_file(str(ckpt / "implicit_captioner" / "model.safetensors")).items()},
            **{f"unet_ema.{k}": v for k, v in load_file(str(ckpt / "unet_ema" / UNET)).items()},
            **{f"cap_ema.{k}": v
               for k, v in load_file(str(ckpt / "implicit_captioner_ema" / "model.safetensors")).items()},
            **{f"ema.{k}": v for k, v in load_file(str(run / "unet" / "diffusion_pytorch_model.safetensors")).items()}}


def test_loss_falls_and_the_summary_has_the_promised_keys(trained_run):
    run, summary = trained_run
    assert summary["steps"] == 40 and summary["data_kind"] == "latents" and summary["bad_samples"] == 0
    assert summary["loss_end"] < 0.6 * summary["loss_start"], summary
    assert (run / "checkpoints" / "step-00000040" / "state.json").is_file()
    assert any((run / "logs").rglob("events.out.tfevents.*"))  # TensorBoard


def test_stopped_and_resumed_run_ends_with_the_same_weights(trained_run, demo_latents, tiny_components, tmp_path):
    reference, full = trained_run
    out = tmp_path / "run"
    common = ["--config", "tiny", "--data", str(demo_latents), "--components", str(tiny_components), "--out", str(out)]
    first = invoke(app, "train-diffusion", *common, "--max-steps", "20")
    assert first["steps"] == 20
    refused = invoke(app, "train-diffusion", *common, "--max-steps", "40", expect=2)
    assert "--resume" in refused["error"]
    second = invoke(app, "train-diffusion", *common, "--max-steps", "40", "--resume")
    assert second["steps"] == 40 and second["resumed_from"] == 20
    assert (second["loss_start"], second["loss_end"]) == (full["loss_start"], full["loss_end"])
    a, b = _weights(reference, 40), _weights(out, 40)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_online_encoding_from_image_shards_trains(demo_shards, tiny_components, tmp_path):
    summary = invoke(app, "train-diffusion", "--config", "tiny", "--data", str(demo_shards), "--components",
                     str(tiny_components), "--out", str(tmp_path / "online"), "--max-steps", "3", "--split", "train")
    assert summary["data_kind"] == "images" and summary["steps"] == 3


def test_two_process_ddp_over_gloo_trains_on_disjoint_samples(demo_latents, tiny_components, tmp_path):
    out = tmp_path / "ddp"
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
           "-m", "imdd_models", "train-diffusion", "--config", "tiny", "--data", str(demo_latents), "--components",
           str(tiny_components), "--out", str(out), "--max-steps", "8", "--log-keys", "--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2 and summary["steps"] == 8
    seen = {}
    for rank in (0, 1):
        rows = [line.split("\t") for line in (out / "seen" / f"rank-{rank}.txt").read_text().splitlines()]
        assert len(rows) == 8 * 4  # 8 steps x batch 4 on every rank: ranks stay in step
        seen[rank] = {key for _, epoch, key in rows if epoch == "0"}
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == 42  # each rank went through its whole first epoch


def test_resume_is_exact_with_dataloader_workers_too(demo_latents, tiny_components, tmp_path):
    # 2 workers hand out batches in turn; stopping after an odd step means the second worker is next.
    config = tmp_path / "workers.yaml"
    config.write_text("base: tiny\nnum_workers: 2\nshuffle_buffer: 8\n")
    runs = {}
    for name, legs in (("straight", [("14", [])]), ("resumed", [("7", []), ("14", ["--resume"])])):
        out = tmp_path / name
        for steps, extra in legs:
            invoke(app, "train-diffusion", "--config", str(config), "--data", str(demo_latents), "--components",
                   str(tiny_components), "--out", str(out), "--max-steps", steps, "--log-keys", *extra)
        runs[name] = out
    seen = {name: (out / "seen" / "rank-0.txt").read_text() for name, out in runs.items()}
    assert seen["straight"] == seen["resumed"]
    a, b = _weights(runs["straight"], 14), _weights(runs["resumed"], 14)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_damaged_checkpoint_is_one_line_and_the_one_before_still_resumes(demo_latents, tiny_components, tmp_path):
    out = tmp_path / "run"
    common = ["--config", "tiny", "--data", str(demo_latents), "--components", str(tiny_components), "--out", str(out)]
    invoke(app, "train-diffusion", *common, "--max-steps", "4", "--save-every", "2")
    newest = out / "checkpoints" / "step-00000004"
    state = newest / "state.json"
    original = state.read_text()
    state.write_text(original[:40])  # cut short, as a full disk leaves it
    for args in (["train-diffusion", *common, "--max-steps", "6", "--resume"],
                 ["export", "--run", str(out), "--out", str(tmp_path / "export")]):
        error = invoke(app, *args, expect=2)["error"]
        assert error.startswith(f"{newest}: damaged checkpoint (JSONDecodeError: "), error
    weights = newest / "unet_ema" / UNET  # what export exports by default
    state.write_text(original)
    whole = weights.read_bytes()
    weights.write_bytes(whole[:100])
    error = invoke(app, "export", "--run", str(out), "--out", str(tmp_path / "export"), expect=2)["error"]
    assert error.startswith(f"{newest}: damaged checkpoint (") and "delete that folder" in error, error
    weights.write_bytes(whole)
    optimizer = newest / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:100])  # torch.load's zip reader fails on it
    error = invoke(app, "train-diffusion", *common, "--max-steps", "6", "--resume", expect=2)["error"]
    assert error.startswith(f"{newest}: damaged checkpoint (RuntimeError: PytorchStreamReader failed"), error
    import shutil
    shutil.rmtree(newest)  # what the message says: the checkpoint before it resumes
    again = invoke(app, "train-diffusion", *common, "--max-steps", "6", "--resume")
    assert again["resumed_from"] == 2 and again["steps"] == 6


def test_latents_of_other_components_and_a_resume_with_another_recipe_are_refused(demo_latents, tiny_components,
                                                                                   tmp_path):
    """Both ran silently: latents encoded by one (random, seed 0) components folder trained with another (seed 5)
    teach the U-Net a latent space the saved pipeline's VAE does not produce; a --resume with another learning
    rate (or EMA decay) continues into a run no uninterrupted run is."""
    from typer.testing import CliRunner
    other = tmp_path / "comps5"
    invoke(app, "components", "--preset", "tiny", "--seed", "5", "--out", str(other))
    err = invoke(app, "train-diffusion", "--config", "tiny", "--data", str(demo_latents), "--components", str(other),
                 "--out", str(tmp_path / "x"), "--max-steps", "1", expect=2)
    assert err["error"].startswith(f"{demo_latents}: latents encoded with other components than --components "
                                   "(seed: 0 -> 5)"), err
    common = ["--data", str(demo_latents), "--components", str(tiny_components), "--out", str(tmp_path / "run")]
    invoke(app, "train-diffusion", "--config", "tiny", *common, "--max-steps", "2")
    changed = tmp_path / "changed.yaml"
    changed.write_text("base: tiny\nlearning_rate: 0.5\nema_decay: 0.5\ncheckpoint_every: 7\n")
    err = invoke(app, "train-diffusion", "--config", str(changed), *common, "--max-steps", "3", "--resume", expect=2)
    assert "--resume with another training recipe than the saved run (" in err["error"]
    assert "learning_rate: " in err["error"] and "-> 0.5" in err["error"], err
    assert "ema_decay: " in err["error"] and "checkpoint_every" not in err["error"]  # how often it saves may change
    again = invoke(app, "train-diffusion", "--config", "tiny", *common, "--max-steps", "3", "--resume",
                   "--save-every", "5")
    assert again["steps"] == 3
    behind = CliRunner().invoke(app, ["train-diffusion", "--config", "tiny", *common, "--max-steps", "2",
                                      "--resume"])  # a --max-steps the run has passed: said, not silent
    assert behind.exit_code == 0 and "already at step 3 (--max-steps 2); nothing was trained" in behind.stderr
