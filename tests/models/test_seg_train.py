"""`imdd-models train-seg` on generated data with the tiny presets: the loss falls, resume is exact, the
few-shot selection is exact and deterministic, bad runs fail in one line."""

from __future__ import annotations

import json
import os
import signal

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from imdd_models.cli import app
from imdd_models.data import iter_raw
from imdd_models.protocol import sample_shots
from seg_fixtures import write_diffusion_folder, write_seg_shards


@pytest.fixture(scope="module")
def setup(tiny_components, tmp_path_factory):
    root = tmp_path_factory.mktemp("seg-train")
    return {"diffusion": write_diffusion_folder(tiny_components, root / "stage1"),
            "data": write_seg_shards(root / "data", per_class=6), "cache": root / "feature-cache"}


def train(setup, out, *args, expect=0):
    result = CliRunner().invoke(app, ["train-seg", "--diffusion", str(setup["diffusion"]), "--data",
                                      str(setup["data"]), "--config", "tiny", "--out", str(out), "--json", *args])
    assert result.exit_code == expect, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_loss_falls_on_generated_data(setup, tmp_path):
    s = train(setup, tmp_path / "m", "--classes", "scratch,hole,stain", "--max-steps", "24", "--lr", "2e-3",
              "--cache-features", str(setup["cache"]))
    assert s["steps"] == 24 and s["classes"] == ["scratch", "hole", "stain"]
    assert s["samples"] == 6 * 3 + 3 + 3  # single-type records, two-type records, normals
    assert s["loss_end"] < 0.85 * s["loss_start"], s
    assert (tmp_path / "m" / "model.safetensors").is_file() and (tmp_path / "m" / "seg_config.json").is_file()


def test_resume_gives_the_same_weights(setup, tmp_path):
    common = ["--classes", "scratch,hole", "--batch-size", "3", "--cache-features", str(setup["cache"])]
    train(setup, tmp_path / "straight", *common, "--max-steps", "3")
    train(setup, tmp_path / "resumed", *common, "--max-steps", "2")
    err = train(setup, tmp_path / "resumed", *common, "--max-steps", "3", expect=2)
    assert "--resume" in err["error"]
    s = train(setup, tmp_path / "resumed", *common, "--max-steps", "3", "--resume")
    assert s["resumed"] and s["steps"] == 3
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    err = train(setup, tmp_path / "resumed", "--classes", "scratch", "--max-steps", "4", "--resume", expect=2)
    assert "different settings" in err["error"]


def test_resume_with_nothing_saved_starts_a_new_run_and_says_so(setup, tmp_path):
    """As diffusers' --resume_from_checkpoint: a script may always pass --resume (a run killed before its first
    save, or the first run of all); the new run is not silent about it."""
    result = CliRunner().invoke(app, ["train-seg", "--diffusion", str(setup["diffusion"]), "--data", str(setup["data"]),
                                      "--config", "tiny", "--out", str(tmp_path / "m"), "--classes", "scratch",
                                      "--max-steps", "1", "--resume", "--calibrate", "off", "--json"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout.strip().splitlines()[-1])
    assert s["steps"] == 1 and not s["resumed"]
    assert f"nothing saved in {tmp_path / 'm'} yet" in result.stderr.replace("\n", "")


def test_shots_are_exact_deterministic_and_report_short_classes(setup, tmp_path):
    def shots(out, k, seed):
        s = train(setup, out, "--classes", "scratch,hole", "--shots", str(k), "--seed", str(seed), "--max-steps", "0",
                  "--allow-untrained")
        return s, json.loads((out / "selection.json").read_text())["keys"]

    s1, keys1 = shots(tmp_path / "a", 3, 7)
    assert s1["per_class"] == {"scratch": 3, "hole": 3} and s1["short"] == {} and s1["normal"] == 3
    pool = [(r["key"], r["defect_types"]) for r in iter_raw(setup["data"])]
    expected = sample_shots([(k, t) for k, t in pool if t], 3, 7, ["scratch", "hole"])
    normals = sample_shots([(k, ["normal"]) for k, t in pool if not t], 3, 7, ["normal"])
    assert keys1 == sorted(set(expected.keys) | set(normals.keys))  # the protocol's sampler, exactly
    _, keys2 = shots(tmp_path / "b", 3, 7)
    assert keys2 == keys1
    _, keys3 = shots(tmp_path / "c", 3, 8)
    assert keys3 != keys1
    s4, _ = shots(tmp_path / "d", 50, 7)
    assert s4["short"] == {"scratch": 8, "hole": 8, "normal": 3}  # all they have, and said so
    split = tmp_path / "split.yaml"  # the protocol's class split file names the base classes
    split.write_text("base: [scratch, hole]\nnovel: [stain]\n")
    s5 = train(setup, tmp_path / "e", "--classes", str(split), "--shots", "3", "--seed", "7", "--max-steps", "0",
              "--allow-untrained")
    assert s5["classes"] == ["scratch", "hole"] and s5["novel"] == ["stain"]
    assert json.loads((tmp_path / "e" / "selection.json").read_text())["keys"] == keys1


def test_a_broken_image_is_counted_and_left_out(setup, tmp_path):
    import pyarrow.parquet as pq
    data = tmp_path / "data"
    (data / "data").mkdir(parents=True)
    table = pq.read_table(next((setup["data"] / "data").glob("*.parquet")))
    rows = table.to_pylist()
    rows[0]["image"] = {"bytes": b"broken", "path": "x.png"}
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), data / "data" / "train-00000-of-00001.parquet")
    result = CliRunner().invoke(app, ["train-seg", "--diffusion", str(setup["diffusion"]), "--data", str(data),
                                      "--config", "tiny", "--out", str(tmp_path / "m"), "--classes", "scratch",
                                      "--max-steps", "0", "--allow-untrained", "--json"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout.strip().splitlines()[-1])
    assert s["bad"] == 1 and rows[0]["key"] in s["bad_examples"][0] and s["samples"] == 8 - 1 + 3


def test_bad_runs_fail_in_one_line(setup, tmp_path):
    err = train(setup, tmp_path / "x", "--config", "huge", expect=2)
    assert err["error"].startswith("--config huge: neither a preset (paper, tiny, small) nor a file")
    err = train(setup, tmp_path / "x", "--split", "validation", expect=2)
    assert "no split 'validation'" in err["error"] and "splits there:" in err["error"]
    err = train(setup, tmp_path / "x", "--shots", "0", expect=2)
    assert "--shots" in err["error"]


@pytest.mark.parametrize("args, option", [
    (["--max-steps", "0"], "--max-steps"), (["--max-steps", "-3"], "--max-steps"),
    (["--batch-size", "0"], "--batch-size"), (["--save-every", "0"], "--save-every"),
    (["--lr", "-1"], "--lr"), (["--lr", "nan"], "--lr"), (["--epochs", "0"], "--epochs"),
    (["--shots", "-2"], "--shots"), (["--timestep", "1000"], "--timestep"),
])
def test_numeric_options_are_checked_before_anything_is_written(setup, tmp_path, args, option):
    out = tmp_path / "m"
    err = train(setup, out, "--classes", "scratch", *args, expect=2)
    assert err["error"].startswith(option) and "\n" not in err["error"]
    assert not out.exists()


def test_a_missing_diffusion_folder_writes_nothing(setup, tmp_path):
    out = tmp_path / "m"
    result = CliRunner().invoke(app, ["train-seg", "--diffusion", str(tmp_path / "nowhere"), "--data",
                                      str(setup["data"]), "--config", "tiny", "--out", str(out), "--max-steps", "1",
                                      "--json"])
    assert result.exit_code == 2 and "not a diffusion model folder" in result.stdout
    assert not out.exists()


def test_a_class_without_training_samples_is_an_error_naming_the_closest(setup, tmp_path):
    err = train(setup, tmp_path / "m", "--classes", "scratch,crak", "--max-steps", "1", expect=2)
    assert "'crak' has no training sample" in err["error"] and "crack" in err["error"]
    split = tmp_path / "split.yaml"
    split.write_text("base: [scrach, hole]\nnovel: [stain]\n")
    err = train(setup, tmp_path / "m", "--classes", str(split), "--max-steps", "1", expect=2)
    assert "'scrach' has no training sample" in err["error"] and "closest known names: scratch" in err["error"]
    assert not (tmp_path / "m").exists()


def test_records_whose_every_defect_is_unseen_are_not_training_samples(setup, tmp_path):
    s = train(setup, tmp_path / "m", "--classes", "scratch", "--max-steps", "0", "--allow-untrained")
    keys = json.loads((tmp_path / "m" / "selection.json").read_text())["keys"]
    rows = {r["key"]: r["defect_types"] for r in iter_raw(setup["data"])}
    assert all("scratch" in rows[k] or not rows[k] for k in keys)  # no hole-only or stain-only record
    assert any(set(rows[k]) - {"scratch"} for k in keys)  # a record with scratch and an unseen type is kept
    assert s["untrained"] is True


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_the_steps_done_and_resuming_equals_an_uninterrupted_run(setup, tmp_path, monkeypatch,
                                                                               sig, code):
    """Ctrl-C (or SIGTERM) mid-run: the step in flight finishes, every step done is saved (not only up to the last
    --save-every), the summary says so with a resume command, exit 130/143; resuming ends where an uninterrupted
    run ends. A real signal to this process, sent when step 3 starts."""
    from imdd_models.segmentation import train as seg_train
    real_set_lr = seg_train.set_lr

    def signal_at_step_3(optimizer, lr, step, *args):
        if step == 3:
            os.kill(os.getpid(), sig)
        return real_set_lr(optimizer, lr, step, *args)

    common = ["--classes", "scratch,hole", "--batch-size", "3", "--num-workers", "0", "--calibrate", "off",
              "--save-every", "100"]
    monkeypatch.setattr(seg_train, "set_lr", signal_at_step_3)
    s = train(setup, tmp_path / "stopped", *common, "--max-steps", "6", expect=code)
    monkeypatch.setattr(seg_train, "set_lr", real_set_lr)
    assert s["stopped"] == sig.name and s["steps"] == 4  # step 3 (0-based) finished, then saved
    assert "--resume" in s["resume_command"] and "--max-steps 6" in s["resume_command"]
    assert json.loads((tmp_path / "stopped" / "train_summary.json").read_text())["stopped"] == sig.name
    if sig == signal.SIGINT:  # predicting with the cut-short model says so
        result = CliRunner().invoke(app, ["predict", "--model", str(tmp_path / "stopped"), "--classes", "scratch",
                                          "--data", str(setup["data"]), "--limit", "1", "--out", str(tmp_path / "p"),
                                          "--json"])
        warnings = json.loads(result.stdout.strip().splitlines()[-1])["warnings"]
        assert any("its training was stopped (SIGINT) at step 4" in w for w in warnings), warnings
    import shlex
    argv = shlex.split(s["resume_command"])  # the command it printed, run as printed
    assert argv[:2] == ["imdd-models", "train-seg"]
    result = CliRunner().invoke(app, [*argv[1:], "--json"])
    assert result.exit_code == 0, result.output
    resumed = json.loads(result.stdout.strip().splitlines()[-1])
    assert resumed["resumed"] and resumed["steps"] == 6 and resumed["stopped"] is None
    train(setup, tmp_path / "straight", *common, "--max-steps", "6")
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "stopped" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_resume_refuses_other_optimisation_values_and_a_foreign_out(setup, tmp_path):
    common = ["--classes", "scratch", "--max-steps", "1", "--calibrate", "off", "--num-workers", "0"]
    assert train(setup, tmp_path / "m", *common)["calibration"] == {"skipped": "--calibrate off"}
    err = train(setup, tmp_path / "n", *common, "--where", "label=normal", expect=2)["error"]
    assert err.endswith("which holds no defect records; train on a split that has them (--split)"), err
    err = train(setup, tmp_path / "m", *common, "--resume", "--lr", "0.5", expect=2)["error"]
    assert "--resume with different settings (lr: " in err and "-> 0.5)" in err  # it was taken silently
    note = CliRunner().invoke(app, ["train-seg", "--diffusion", str(setup["diffusion"]), "--data", str(setup["data"]),
                                    "--config", "tiny", "--out", str(tmp_path / "m"), *common, "--resume"])
    assert note.exit_code == 0 and "already at step 1; nothing to train" in note.stderr.replace("\n", "")
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    err = train(setup, foreign, *common, expect=2)["error"]
    assert err == (f"--out {foreign}: not empty and not a train-seg run (it holds 'notes.txt'); choose a new or "
                   "empty folder")
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    failed = tmp_path / "failed"  # a run that failed before its first checkpoint left its selection.json
    failed.mkdir()
    (failed / "selection.json").write_text("{}")
    assert train(setup, failed, *common)["steps"] == 1  # its rerun is taken


def test_two_processes_stop_together_on_ctrl_c_with_every_step_saved(setup, tmp_path):
    """torchrun, 2 CPU processes: a Ctrl-C to the process group stops both ranks at the same step; rank 0 saves
    that step (not only the last --save-every) before any rank exits and alone prints the --json line."""
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port, "-m",
           "imdd_models", "train-seg", "--diffusion", str(setup["diffusion"]), "--data", str(setup["data"]),
           "--config", "tiny", "--out", str(out), "--classes", "scratch,hole", "--max-steps", "100000",
           "--save-every", "3", "--num-workers", "0", "--calibrate", "off", "--json"]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: (os.setpgrp(), signal.signal(signal.SIGINT, signal.SIG_DFL)))
    trainer = out / "checkpoint" / "trainer.json"
    deadline = time.monotonic() + 300
    while not trainer.is_file():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=240)
    lines = [json.loads(x) for x in stdout.splitlines() if x.startswith("{")]
    assert len(lines) == 1, (stdout[-2000:], stderr[-3000:])  # rank 0 only
    summary = lines[0]
    assert summary["stopped"] == "SIGINT" and summary["steps"] >= 3, stderr[-3000:]
    assert json.loads(trainer.read_text())["step"] == summary["steps"]  # saved where it stopped
