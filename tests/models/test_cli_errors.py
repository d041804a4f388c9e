"""Run-level errors vs bugs in `imdd-models`: a RunError (bad option, unusable input) is one `error:` line
and exit code 2; any other exception, also a KeyError or ValueError, keeps its traceback."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imdd_build.errors import RunError
from imdd_models.cli import app
from imdd_models.evaluation import run as evaluation_run
from imdd_models.evaluation.generation import generated_images


def _one_error_line(result) -> str:
    """The single `error:` line on stderr of a run that failed at run level; also the --json error object."""
    assert result.exit_code == 2, (result.exit_code, result.stdout[-2000:], result.stderr[-2000:], result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]  # progress bars, then the error
    errors = [line for line in lines if "error" in line.lower()]
    assert errors == [lines[-1]] and lines[-1].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    error = json.loads(result.stdout.strip().splitlines()[-1])
    assert error["error"] == lines[-1].removeprefix("error: ")
    return error["error"]


@pytest.mark.parametrize("bug", [KeyError("boom"), ValueError("boom")])
def test_a_bug_inside_a_command_keeps_its_traceback(tmp_path, monkeypatch, bug):
    def broken(*_args, **_kwargs):
        raise bug

    monkeypatch.setattr(evaluation_run, "read_predictions", broken)
    result = CliRunner().invoke(app, ["evaluate", "--predictions", str(tmp_path), "--data", str(tmp_path), "--json"])
    assert result.exception is bug  # not turned into exit code 2 and an `error:` line
    assert result.exit_code == 1 and "error:" not in result.stderr


def test_a_run_error_is_one_line_and_exit_2(tmp_path):
    split_file = tmp_path / "split.yaml"
    split_file.write_text("base: [scratch]\n")
    result = CliRunner().invoke(app, ["evaluate", "--predictions", str(tmp_path), "--data", str(tmp_path),
                                      "--classes-seen", "scratch", "--class-split", str(split_file), "--json"])
    assert _one_error_line(result) == "give --classes-seen or --class-split, not both"
    assert isinstance(result.exception, SystemExit)


def test_a_bad_where_is_one_line(demo_shards, tmp_path):
    predictions = tmp_path / "preds"
    predictions.mkdir()
    (predictions / "predictions.jsonl").write_text("")
    result = CliRunner().invoke(app, ["evaluate", "--predictions", str(predictions), "--data", str(demo_shards),
                                      "--where", "label", "--json"])
    assert _one_error_line(result).startswith("--where term 'label': expected FIELD=VALUE")


def test_a_config_file_that_is_not_yaml_is_one_line(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("base: tiny\nlearning_rate: [1e-4,\n")
    result = CliRunner().invoke(app, ["train-diffusion", "--config", str(config), "--data", str(tmp_path),
                                      "--components", str(tmp_path), "--out", str(tmp_path / "out"), "--json"])
    assert _one_error_line(result).startswith(f"{config}: not valid YAML at line 3")


def test_a_torn_model_config_is_one_line_naming_the_file(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "seg_config.json").write_text('{"model": ')
    image = tmp_path / "part.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    result = CliRunner().invoke(app, ["predict", str(image), "--model", str(model), "--classes", "scratch",
                                      "--out", str(tmp_path / "out"), "--json"])
    assert _one_error_line(result).startswith(f"{model / 'seg_config.json'}: not valid JSON")


def test_an_unreadable_generated_image_is_named(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not a png")
    with pytest.raises(RunError, match=r"b\.png: cannot read the image"):
        list(generated_images(tmp_path))


# Every folder option a command writes into, given a path that is a file (or lies under one): one error line
# before anything is read or written (it was a FileExistsError/NotADirectoryError traceback, sometimes after
# the work was done).
_OUT_IS_A_FILE = {
    "components": ["components", "--preset", "tiny"],
    "precompute": ["precompute", "--data", "D", "--components", "C"],
    "train-diffusion": ["train-diffusion", "--data", "D", "--components", "C", "--max-steps", "2"],
    "export": ["export", "--run", "R"],
    "generate": ["generate", "--model", "M", "--prompt", "a scratch"],
    "inpaint-defect": ["inpaint-defect", "--model", "M", "--image", "I", "--mask", "K", "--prompt", "a scratch"],
    "demo": ["demo"],
    "train-seg": ["train-seg", "--diffusion", "S", "--data", "D"],
    "predict": ["predict", "--model", "M", "--classes", "scratch"],
}


@pytest.mark.parametrize("command", sorted(_OUT_IS_A_FILE))
@pytest.mark.parametrize("below", [False, True], ids=["file", "under-a-file"])
def test_an_out_folder_that_is_a_file_is_one_line(tmp_path, command, below):
    blocker = tmp_path / "afile"
    blocker.write_text("keep me\n")
    out = blocker / "sub" if below else blocker
    result = CliRunner().invoke(app, [*_OUT_IS_A_FILE[command], "--out", str(out), "--json"])
    expected = f"--out {out}: not a folder" + (f" ({blocker} is a file)" if below else "")
    assert _one_error_line(result) == expected
    assert blocker.read_text() == "keep me\n" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_demo_shards_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "shards").write_text("")
    result = CliRunner().invoke(app, ["demo", "--shards", str(tmp_path / "shards"), "--out", str(tmp_path / "o"),
                                      "--json"])
    assert _one_error_line(result) == f"--shards {tmp_path / 'shards'}: not a folder"
    assert not (tmp_path / "o").exists()


def test_a_truncated_parquet_shard_is_one_line_naming_it(demo_shards, tiny_components, tmp_path):
    import shutil
    data = tmp_path / "shards"
    shutil.copytree(demo_shards, data)
    for shard in (data / "data").glob("*.parquet"):
        shard.write_bytes(shard.read_bytes()[:5000])  # a copy cut short: no Parquet footer
    train = next((data / "data").glob("train-*.parquet"))
    result = CliRunner().invoke(app, ["train-diffusion", "--config", "tiny", "--data", str(data), "--components",
                                      str(tiny_components), "--out", str(tmp_path / "run"), "--split", "train",
                                      "--max-steps", "2", "--json"])
    assert _one_error_line(result).startswith(f"{train}: not a readable Parquet shard (Parquet magic bytes")
    predictions = tmp_path / "preds"
    predictions.mkdir()
    (predictions / "predictions.jsonl").write_text("")
    result = CliRunner().invoke(app, ["evaluate", "--predictions", str(predictions), "--data", str(data), "--json"])
    assert ": not a readable Parquet shard (" in _one_error_line(result)


def test_a_feature_cache_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "cache").write_text("")
    result = CliRunner().invoke(app, ["train-seg", "--diffusion", "S", "--data", "D", "--out", str(tmp_path / "m"),
                                      "--cache-features", str(tmp_path / "cache"), "--json"])
    assert _one_error_line(result) == f"--cache-features {tmp_path / 'cache'}: not a folder"


def test_a_non_empty_folder_of_something_else_is_not_written_into(trained_run, tmp_path):
    """components, export and demo --shards wrote their files beside the user's (a workspace, a components folder
    taken for shards); each now refuses such a folder and leaves it as it was. Their own folders are rewritten."""
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    run, _ = trained_run
    cases = {
        "components": (["components", "--preset", "tiny", "--out", str(foreign)],
                       f"--out {foreign}: not empty and not a components folder (it holds 'notes.txt'); choose a "
                       "new or empty folder"),
        "export": (["export", "--run", str(run), "--out", str(foreign)],
                   f"--out {foreign}: not empty and not a pipeline folder (it holds 'notes.txt'); choose a new or "
                   "empty folder"),
        "demo": (["demo", "--shards", str(foreign), "--out", str(tmp_path / "demo"), "--steps", "1"],
                 f"--shards {foreign}: not empty and not a shard folder (it holds 'notes.txt'); choose a new or "
                 "empty folder"),
    }
    for name, (args, message) in cases.items():
        result = CliRunner().invoke(app, [*args, "--json"])
        assert _one_error_line(result) == message, name
        assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"], name
    again = tmp_path / "comps"
    for _ in range(2):  # a components folder is written again in place
        assert CliRunner().invoke(app, ["components", "--preset", "tiny", "--out", str(again)]).exit_code == 0
    (again / "components.json").unlink()  # one interrupted before its manifest (written last): its rerun is taken
    assert CliRunner().invoke(app, ["components", "--preset", "tiny", "--out", str(again)]).exit_code == 0


@pytest.mark.parametrize("cli, argv, command, message", [
    ("models", ["train-seg", "--diffusion", "S", "--data", "D", "--out", "O", "--max-steps", "abc", "--json"],
     "train-seg", "Invalid value for '--max-steps'"),
    ("models", ["evaluate", "--predictions", "P", "--data", "D", "--pixel-bins", "-1", "--json"], "evaluate",
     "Invalid value for '--pixel-bins'"),
    ("build", ["--workspace", "W", "ingest", "mvtec", "--workers", "x", "--json"], "ingest",
     "Invalid value for '--workers'"),
])
def test_an_option_that_does_not_parse_still_ends_with_the_json_line(capsys, cli, argv, command, message):
    """Typer reports these before any command runs (its usage box, no JSON): a script reading the last line
    got nothing. The console scripts' entry point now prints the error object there too."""
    from imdd_build.cli import app as build_app
    from imdd_build.console import run_cli
    with pytest.raises(SystemExit) as exit_info:
        run_cli(app if cli == "models" else build_app, argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    error = json.loads(captured.out.strip().splitlines()[-1])
    assert error["command"] == command and error["error"].startswith(message), error
    assert "Traceback" not in captured.err
