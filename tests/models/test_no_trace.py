"""Nothing is written before the arguments are validated: an unknown split, a --where that names no field or
matches nothing, a missing input or a misspelt --device leaves `--out` as it was (absent when it was absent),
and the "no records" errors name the fix (the splits there are, the valid fields) through the shared
`imdd_models.data.explain.no_records_message`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imdd_models.cli import app
from seg_fixtures import write_diffusion_folder, write_seg_shards


def refused(*args: str) -> str:
    """Run a command that must fail with a run-level error: exit 2, one JSON error line; the message."""
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 2, (result.exit_code, result.stdout[-1500:], result.stderr[-1500:], result.exception)
    message = json.loads(result.stdout.strip().splitlines()[-1])["error"]
    assert "\n" not in message
    return message


SPLIT_CASES = [
    (["--split", "tset"], "no split 'tset'; did you mean 'test'? splits there: test, train"),
    (["--where", "sorce=demo"], "no field 'sorce' in the records; did you mean 'source'? fields:"),
    (["--where", "label=nothing"], "no records match --where label=nothing"),
]


@pytest.mark.parametrize("args, says", SPLIT_CASES)
def test_precompute_refuses_before_writing(demo_shards, tiny_components, tmp_path, args, says):
    out = tmp_path / "latents"
    message = refused("precompute", "--data", str(demo_shards), "--components", str(tiny_components),
                      "--out", str(out), "--workers", "0", *args)
    assert says in message
    assert not out.exists()  # before: an empty latents/ and a latents.json were left behind


@pytest.mark.parametrize("args, says", SPLIT_CASES)
def test_train_diffusion_refuses_before_writing(demo_shards, tiny_components, tmp_path, args, says):
    out = tmp_path / "run"
    message = refused("train-diffusion", "--config", "tiny", "--data", str(demo_shards), "--components",
                      str(tiny_components), "--out", str(out), "--max-steps", "1", *args)
    assert says in message
    assert not out.exists()


@pytest.fixture(scope="module")
def seg_setup(tiny_components, tmp_path_factory):
    """A stage-1 folder, two-class training shards (split train) and an untrained (0-step) stage-2 model."""
    root = tmp_path_factory.mktemp("no-trace")
    diffusion = write_diffusion_folder(tiny_components, root / "stage1")
    train = write_seg_shards(root / "train", per_class=1, classes=("scratch", "hole"))
    result = CliRunner().invoke(app, ["train-seg", "--diffusion", str(diffusion), "--data", str(train), "--config",
                                      "tiny", "--out", str(root / "model"), "--max-steps", "0", "--allow-untrained",
                                      "--num-workers", "0", "--json"])
    assert result.exit_code == 0, result.output
    return {"diffusion": diffusion, "train": train, "model": root / "model"}


@pytest.mark.parametrize("args, says", [
    (["--split", "tset"], "no split 'tset'; splits there: train; 'all' for every split"),
    (["--where", "sorce=x"], "did you mean 'source'? fields:"),
    (["--where", "label=nothing"], "no records in split 'train' match --where label=nothing"),
])
def test_train_seg_names_the_splits_and_writes_nothing(seg_setup, tmp_path, args, says):
    out = tmp_path / "seg"
    message = refused("train-seg", "--diffusion", str(seg_setup["diffusion"]), "--data", str(seg_setup["train"]),
                      "--config", "tiny", "--out", str(out), "--num-workers", "0", *args)
    assert says in message and not out.exists()
    missing = refused("train-seg", "--diffusion", str(tmp_path / "nowhere"), "--data", str(seg_setup["train"]),
                      "--config", "tiny", "--out", str(out))
    assert "nowhere" in missing and not out.exists()


@pytest.mark.parametrize("args, says", [
    (["--data", "{train}", "--split", "tset"], "no split 'tset'; splits there: train"),
    (["--data", "{train}", "--where", "sorce=x"], "did you mean 'source'? fields:"),
    (["--data", "{train}", "--where", "label=nothing"], "no records match --where label=nothing"),
    (["--data", "{missing}"], "not a shard folder"),
    (["{missing}.png"], "no such image file"),
    (["{bad}"], "no usable image (1 bad"),
    (["--data", "{train}", "--device", "cdua"], "--device 'cdua'"),
])
def test_predict_refuses_before_writing(seg_setup, tmp_path, args, says):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    args = [a.format(train=seg_setup["train"], missing=tmp_path / "nothing", bad=bad) for a in args]
    out = tmp_path / "pred"
    message = refused("predict", "--model", str(seg_setup["model"]), "--classes", "hole", "--out", str(out), *args)
    assert says in message
    assert not out.exists()  # before: predictions.jsonl, meta.json, maps/ (an unknown split even exited 0)


def test_stage1_commands_leave_no_trace(tiny_components, tmp_path):
    from PIL import Image
    image = tmp_path / "image.png"
    Image.new("RGB", (64, 64), "gray").save(image)
    wide = tmp_path / "wide.png"
    Image.new("L", (64, 32), 255).save(wide)
    out = tmp_path / "out"
    model = tmp_path / "no-model"
    cases = [
        (["components", "--preset", "tinyy"], "unknown preset 'tinyy'"),
        (["components", "--preset", "sd15", "--vae", str(tmp_path / "no-vae"), "--text-encoder", "x/y",
          "--image-encoder", "x/z"], "no-vae: cannot load AutoencoderKL: no such folder"),
        (["generate", "--model", str(model), "--prompt", "a scratch", "--device", "cdua"], "--device 'cdua'"),
        (["generate", "--model", str(model), "--image", str(tmp_path / "none.png")], "none.png: cannot read"),
        (["inpaint-defect", "--model", str(model), "--image", str(image), "--mask", str(tmp_path / "none.png"),
          "--prompt", "a scratch"], "none.png: cannot read"),
        (["inpaint-defect", "--model", str(model), "--image", str(image), "--mask", str(wide),
          "--prompt", "a scratch"], "another aspect ratio"),
        (["inpaint-defect", "--model", str(model), "--image", str(image), "--mask", str(image),
          "--prompt", "a scratch", "--device", "cdua"], "--device 'cdua'"),
        (["precompute", "--data", str(tmp_path), "--components", str(tiny_components), "--device", "cdua"],
         "--device 'cdua'"),
        (["export", "--run", str(tmp_path / "no-run")], "no checkpoint"),
    ]
    for args, says in cases:
        message = refused(*args, "--out", str(out))
        assert says in message, (args, message)
        assert not out.exists(), args


def test_evaluate_writes_no_report_on_an_unknown_split(demo_shards, tmp_path):
    (tmp_path / "predictions.jsonl").write_text("")
    report = tmp_path / "reports" / "eval.md"
    message = refused("evaluate", "--predictions", str(tmp_path), "--data", str(demo_shards), "--split", "tset",
                      "--markdown", str(report))
    assert "splits there: test, train" in message and not report.parent.exists()
