"""The trained folder: a StableDiffusionPipeline that loads and runs; generate and inpaint-defect write images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.conftest import invoke
from imdd_models.cli import app


def test_output_folder_is_a_stable_diffusion_pipeline(trained_run):
    from diffusers import StableDiffusionPipeline
    run, _ = trained_run
    pipe = StableDiffusionPipeline.from_pretrained(str(run), safety_checker=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    images = pipe("a scratch on a metal plate", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                  output_type="np").images
    assert images.shape == (1, 64, 64, 3) and np.isfinite(images).all()
    assert (run / "implicit_captioner" / "model.safetensors").is_file()
    assert type(pipe.scheduler).__name__ == "DDPMScheduler" and pipe.scheduler.config.beta_schedule == "scaled_linear"


def test_generate_from_a_prompt_and_from_an_image(trained_run, demo_shards, tmp_path):
    run, _ = trained_run
    by_prompt = invoke(app, "generate", "--model", str(run), "--prompt", "a hole in a ceramic tile", "--n", "3",
                       "--steps", "3", "--out", str(tmp_path / "p"))
    assert len(by_prompt["images"]) == 3 and Image.open(by_prompt["grid"]).size == (128, 128)
    image = next((demo_shards.parent / "demo-source").rglob("*.png"))
    by_image = invoke(app, "generate", "--model", str(run), "--image", str(image), "--n", "2", "--steps", "3",
                      "--out", str(tmp_path / "i"))
    assert by_image["conditioning"] == "image" and all(Image.open(p).size == (64, 64) for p in by_image["images"])
    again = invoke(app, "generate", "--model", str(run), "--image", str(image), "--n", "2", "--steps", "3",
                   "--out", str(tmp_path / "i2"))
    assert Image.open(again["images"][0]).tobytes() == Image.open(by_image["images"][0]).tobytes()  # seeded
    both = invoke(app, "generate", "--model", str(run), "--out", str(tmp_path / "x"), expect=2)
    assert "exactly one of --prompt and --image" in both["error"]


def test_inpaint_defect_keeps_the_pixels_away_from_the_mask(trained_run, tmp_path):
    run, _ = trained_run
    rng = np.random.RandomState(0)
    source = (rng.rand(300, 451, 3) * 255).astype(np.uint8)  # any size, not square
    Image.fromarray(source).save(tmp_path / "normal.png")
    mask = np.zeros((300, 451), np.uint8)
    mask[100:140, 200:260] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    summary = invoke(app, "inpaint-defect", "--model", str(run), "--image", str(tmp_path / "normal.png"), "--mask",
                     str(tmp_path / "mask.png"), "--prompt", "a scratch", "--steps", "3", "--out", str(tmp_path / "o"))
    result = np.asarray(Image.open(summary["image"]))
    assert result.shape == source.shape
    away = np.ones(mask.shape, bool)
    away[100 - 4:140 + 4, 200 - 4:260 + 4] = False  # the mask grown by more than the 3-px feather
    assert (result[away] == source[away]).all()
    assert (result[100:140, 200:260] != source[100:140, 200:260]).mean() > 0.5  # painted inside

    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((300, 451), np.uint8)).save(empty)
    error = invoke(app, "inpaint-defect", "--model", str(run), "--image", str(tmp_path / "normal.png"), "--mask",
                   str(empty), "--prompt", "a scratch", "--out", str(tmp_path / "e"), expect=2)
    assert "mask is empty" in error["error"]


def test_load_components_reads_a_trained_folder(trained_run, tiny_components):
    from imdd_models.components import load_components
    run, _ = trained_run
    comps = load_components(run)
    unet, captioner = comps.load_unet(), comps.load_captioner()
    assert not any(p.requires_grad for p in unet.parameters()) and unet.config.cross_attention_dim == 32
    assert captioner(torch.zeros(1, 512)).shape == (1, 32) and comps.resolution == 64
    try:
        load_components(tiny_components).load_unet()
    except FileNotFoundError as exc:
        assert "no trained U-Net" in str(exc)
    else:
        raise AssertionError("a components folder has no trained U-Net")


def test_a_second_generate_into_the_folder_leaves_only_its_samples_for_evaluation(trained_run, tmp_path):
    """evaluate-generation counted grid.png as a sample, and the 3rd sample of an earlier --n 3 run as one of this
    run's 2: the folder's generate.json now says which files are samples, and earlier samples go."""
    from imdd_models.evaluation.generation import generated_images
    run, _ = trained_run
    out = tmp_path / "g"
    invoke(app, "generate", "--model", str(run), "--prompt", "a hole", "--n", "3", "--steps", "2", "--out", str(out))
    assert [Path(p).name for p, _ in generated_images(out)] == ["000.png", "001.png", "002.png"]  # no grid.png
    invoke(app, "generate", "--model", str(run), "--prompt", "a hole", "--n", "2", "--steps", "2", "--out", str(out))
    assert [Path(p).name for p, _ in generated_images(out)] == ["000.png", "001.png"]
    assert sorted(p.name for p in out.iterdir()) == ["000.png", "001.png", "generate.json", "grid.png"]
    own = tmp_path / "own"  # a folder of the user's own samples (no generate.json): every image file
    own.mkdir()
    Image.new("RGB", (8, 8)).save(own / "a.png")
    Image.new("RGB", (8, 8)).save(own / "b.jpg")
    assert [Path(p).name for p, _ in generated_images(own)] == ["a.png", "b.jpg"]
    import shutil
    shutil.copytree(out, own / "seed0")  # samples kept per run in subfolders: each one's grid.png left out too
    assert [str(Path(p).relative_to(own)) for p, _ in generated_images(own)] == ["a.png", "b.jpg", "seed0/000.png",
                                                                                "seed0/001.png"]


def test_sampling_errors_name_the_way_out(trained_run, tmp_path):
    run, _ = trained_run
    err = invoke(app, "generate", "--model", str(run), "--prompt", "a hole", "--steps", "5000", "--out",
                 str(tmp_path / "o"), expect=2)["error"]
    assert err == "--steps 5000: at most 1000 (the timesteps the model was trained on)"  # was a diffusers traceback
    stopped = tmp_path / "stopped"  # a run folder stopped before its end: checkpoints/, no pipeline folder
    (stopped / "checkpoints" / "step-00000002").mkdir(parents=True)
    err = invoke(app, "generate", "--model", str(stopped), "--prompt", "a hole", "--out", str(tmp_path / "o"),
                 expect=2)["error"]
    assert err.startswith(f"{stopped}: a training run without a pipeline folder") and "imdd-models export" in err
    err = invoke(app, "generate", "--model", str(tmp_path / "nope"), "--prompt", "a hole", "--out",
                 str(tmp_path / "o"), expect=2)["error"]
    assert err == f"--model {tmp_path / 'nope'}: no such folder"
