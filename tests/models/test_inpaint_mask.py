"""inpaint-defect's mask checks: another aspect ratio is refused in one line naming both sizes, an RGB mask is
read as its luminance and that is said; nothing is written (nor a model loaded) before the checks pass."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from models.conftest import invoke
from imdd_build.errors import RunError
from imdd_models.cli import app
from imdd_models.diffusion.inpaint import load_mask


def _files(tmp_path, mask: Image.Image, size=(451, 300)):
    Image.new("RGB", size, (90, 90, 90)).save(tmp_path / "normal.png")
    mask.save(tmp_path / "mask.png")
    return ["inpaint-defect", "--model", str(tmp_path / "no-model"), "--image", str(tmp_path / "normal.png"),
            "--mask", str(tmp_path / "mask.png"), "--prompt", "a scratch", "--out", str(tmp_path / "out")]


def test_a_mask_of_another_aspect_ratio_is_refused(tmp_path):
    square = Image.new("L", (300, 300), 0)
    square.paste(255, (100, 100, 140, 140))
    error = invoke(app, *_files(tmp_path, square), expect=2)["error"]
    assert "the mask is 300x300 but the image is 451x300" in error and "\n" not in error
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_mask_of_the_same_aspect_ratio_is_resized(tmp_path):
    half = Image.new("L", (226, 150), 0)  # 451x300 halved: within one pixel
    half.paste(255, (50, 50, 70, 70))
    mask, info = load_mask(_write(tmp_path, half), (451, 300))
    assert mask.size == (451, 300) and info == {"mask_resized": True, "mask_from": "L"}


def _write(tmp_path, image):
    path = tmp_path / "m.png"
    image.save(path)
    return path


def test_an_rgb_mask_is_read_as_luminance_and_said(tmp_path):
    red = Image.new("RGB", (451, 300), (0, 0, 0))
    red.paste((255, 0, 0), (100, 100, 140, 140))
    error = invoke(app, *_files(tmp_path, red), expect=2)["error"]
    assert "mask is empty" in error and "luminance of a RGB image" in error and "pure red is 76" in error
    white = Image.new("RGB", (451, 300), (0, 0, 0))
    white.paste((255, 255, 255), (100, 100, 140, 140))
    mask, info = load_mask(_write(tmp_path, white), (451, 300))
    assert info["mask_from"] == "luminance of a RGB image" and (np.asarray(mask) > 127).sum() == 1600
    with pytest.raises(RunError, match="cannot read"):
        (tmp_path / "bad.png").write_bytes(b"nope")
        load_mask(tmp_path / "bad.png", (451, 300))


def test_the_cli_says_when_it_used_luminance(trained_run, tmp_path):
    from typer.testing import CliRunner
    run, _ = trained_run
    white = Image.new("RGB", (96, 64), (0, 0, 0))
    white.paste((255, 255, 255), (30, 20, 50, 40))
    args = _files(tmp_path, white, size=(96, 64))
    args[args.index("--model") + 1] = str(run)
    result = CliRunner().invoke(app, [*args, "--steps", "2", "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert "the mask was taken from the luminance of a RGB image" in result.stderr
    assert '"mask_from": "luminance of a RGB image"' in result.stdout


def test_a_0_1_label_mask_counts_its_ones(tmp_path):
    labels = Image.new("L", (451, 300), 0)  # the label-PNG convention: 1 = defect (it was refused as empty)
    labels.paste(1, (100, 100, 140, 140))
    mask, info = load_mask(_write(tmp_path, labels), (451, 300))
    assert info["mask_from"] == "0/1 labels" and (np.asarray(mask) > 127).sum() == 1600
    faint = Image.new("L", (451, 300), 0)  # values above 1 keep the 127 threshold: 2..127 is background
    faint.paste(100, (100, 100, 140, 140))
    faint.paste(255, (200, 200, 210, 210))
    mask, info = load_mask(_write(tmp_path, faint), (451, 300))
    assert info["mask_from"] == "L" and (np.asarray(mask) > 127).sum() == 100
