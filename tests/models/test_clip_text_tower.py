"""The CLIP text tower of stage 2's CLIP ensemble travels with the stage-1 folders: `components` writes
`clip_text_encoder/` + `clip_tokenizer/` from the pretrained CLIP model of the image tower (nothing for a random
image tower unless `--clip-text random`), `train-diffusion`/`export` copy them into the pipeline folder, and
`predict` on that folder runs the ensemble without `--clip`.

A tiny `CLIPModel` saved locally (with a CLIP tokenizer and image processor beside it, as on the Hub) stands
in for openai/clip-vit-base-patch32.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from imdd_models.cli import app
from models.conftest import invoke
from models.test_cli_errors import _one_error_line
from seg_fixtures import write_seg_shards


@pytest.fixture(scope="module")
def clip_model_dir(tiny_components, tmp_path_factory) -> Path:
    """A tiny CLIPModel folder laid out like a Hub CLIP repo: config.json + weights + tokenizer + processor."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    from imdd_models._compat import image_processor_class
    from imdd_models.components.presets import TINY_TEXT, TINY_VISION
    out = tmp_path_factory.mktemp("clip") / "tiny-clip"
    torch.manual_seed(123)
    dim = TINY_VISION["projection_dim"]
    CLIPModel(CLIPConfig(text_config={**TINY_TEXT, "projection_dim": dim}, vision_config=TINY_VISION,
                         projection_dim=dim)).save_pretrained(str(out))
    CLIPTokenizer.from_pretrained(str(tiny_components / "tokenizer")).save_pretrained(str(out))
    image_processor_class().from_pretrained(str(tiny_components / "feature_extractor")).save_pretrained(str(out))
    return out


def _components(*args: str) -> dict:
    return invoke(app, "components", *args)


def _weights(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_sd15_writes_the_text_tower_of_the_image_towers_clip_model(tiny_components, clip_model_dir, tmp_path):
    from transformers import CLIPModel, CLIPTextModelWithProjection, CLIPTokenizer, CLIPVisionModelWithProjection

    from imdd_models.segmentation.clip_head import ClipClassifier, clip_unavailable
    out = tmp_path / "sd15"
    s = _components("--preset", "sd15", "--out", str(out), "--vae", str(tiny_components), "--text-encoder",
                    str(tiny_components), "--image-encoder", str(clip_model_dir))
    text = CLIPTextModelWithProjection.from_pretrained(str(out / "clip_text_encoder"))
    vision = CLIPVisionModelWithProjection.from_pretrained(str(out / "image_encoder"))
    assert text.config.projection_dim == vision.config.projection_dim == 512
    # the pretrained model's own towers, both of them (not a random text tower)
    clip = CLIPModel.from_pretrained(str(clip_model_dir))
    assert torch.equal(text.text_projection.weight, clip.text_projection.weight)
    assert torch.equal(vision.visual_projection.weight, clip.visual_projection.weight)
    tok = CLIPTokenizer.from_pretrained(str(out / "clip_tokenizer"))
    assert tok("a cat").input_ids == [49406, 320, 2368, 49407] and tok.model_max_length == 77
    manifest = json.loads((out / "components.json").read_text())
    assert manifest["clip_text_encoder"] == str(clip_model_dir) == manifest["clip_tokenizer"]
    assert manifest["clip_projection_dim"] == 512 and manifest["clip_text_reason"] is None
    assert s["clip_text_encoder"] == str(clip_model_dir) and s["warnings"] == []
    assert s["params"]["clip_text_encoder"] == sum(p.numel() for p in text.parameters())
    # what stage 2 reads: the classifier loads from the folder alone
    assert clip_unavailable(out) is None
    assert ClipClassifier.from_folder(out).names(["scratch"]).shape == (1, 512)
    # --clip-text none: nothing, and a folder written again loses the earlier tower
    none = _components("--preset", "sd15", "--out", str(out), "--vae", str(tiny_components), "--text-encoder",
                       str(tiny_components), "--image-encoder", str(clip_model_dir), "--clip-text", "none")
    assert none["clip_text_encoder"] is None and none["warnings"] == [] and not (out / "clip_text_encoder").exists()
    assert not (out / "clip_tokenizer").exists() and "no CLIP text tower" in clip_unavailable(out)


def test_random_presets_write_no_clip_text_tower_unless_asked(tmp_path):
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection
    tiny = _components("--preset", "tiny", "--out", str(tmp_path / "tiny"))
    assert not (tmp_path / "tiny" / "clip_text_encoder").exists() and tiny["clip_text_encoder"] is None
    assert "random" in tiny["clip_text_reason"] and tiny["warnings"] == []  # by design: no warning
    runs = []
    for name in ("a", "b"):
        s = _components("--preset", "tiny", "--out", str(tmp_path / name), "--clip-text", "random", "--seed", "3")
        assert s["clip_text_encoder"] == "random" and s["clip_projection_dim"] == 512 and s["seed"] == 3
        runs.append(CLIPTextModelWithProjection.from_pretrained(str(tmp_path / name / "clip_text_encoder")))
        assert (tmp_path / name / "clip_tokenizer" / "vocab.json").is_file()
    vision = CLIPVisionModelWithProjection.from_pretrained(str(tmp_path / "a" / "image_encoder"))
    assert runs[0].config.projection_dim == vision.config.projection_dim
    a, b = _weights(runs[0]), _weights(runs[1])
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same weights


def test_an_image_tower_without_a_text_tower_writes_none_and_says_so(tiny_components, tmp_path):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from imdd_models.components.presets import TINY_TEXT
    # tiny_components' image_encoder/ is a bare CLIPVisionModelWithProjection: loading a text tower from it
    # would "succeed" with random weights; it must be recognised as no tower.
    s = _components("--preset", "sd15", "--out", str(tmp_path / "o"), "--vae", str(tiny_components),
                    "--text-encoder", str(tiny_components), "--image-encoder", str(tiny_components / "image_encoder"))
    assert s["clip_text_encoder"] is None and not (tmp_path / "o" / "clip_text_encoder").exists()
    assert "no CLIP text tower" in s["clip_text_reason"] and "clip_text_encoder/" in s["warnings"][0]
    # named explicitly, the same folder is an error line; so is a tower of another joint space
    bad = CliRunner().invoke(app, ["components", "--preset", "tiny", "--out", str(tmp_path / "x"), "--clip-text",
                                   str(tiny_components / "image_encoder"), "--json"])
    assert _one_error_line(bad).startswith("--clip-text ") and "no CLIP text tower" in _one_error_line(bad)
    other = tmp_path / "clip768"
    CLIPTextModelWithProjection(CLIPTextConfig(**{**TINY_TEXT, "projection_dim": 768})).save_pretrained(str(other))
    bad = CliRunner().invoke(app, ["components", "--preset", "tiny", "--out", str(tmp_path / "y"), "--clip-text",
                                   str(other), "--json"])
    assert "768 != image_encoder's 512" in _one_error_line(bad)


def test_export_keeps_the_tower_and_predict_ensembles_without_clip(tiny_components, clip_model_dir, demo_shards,
                                                                    tmp_path):
    from diffusers import StableDiffusionPipeline
    # tiny shapes (CPU-sized U-Net) with pretrained frozen parts: the image tower is the CLIP model's
    comps = tmp_path / "comps"
    _components("--preset", "tiny", "--out", str(comps), "--vae", str(tiny_components), "--text-encoder",
                str(tiny_components), "--image-encoder", str(clip_model_dir))
    assert (comps / "clip_text_encoder").is_dir()
    run = tmp_path / "run"
    # image shards, encoded online by these components (latents of the random tiny folder would be refused)
    invoke(app, "train-diffusion", "--config", "tiny", "--data", str(demo_shards), "--split", "train",
           "--components", str(comps), "--out", str(run), "--max-steps", "2")
    assert (run / "clip_text_encoder" / "config.json").is_file()  # the run's own final export
    stage1 = tmp_path / "stage1"
    e = invoke(app, "export", "--run", str(run), "--out", str(stage1))
    assert e["clip_text_encoder"] is True
    for name in ("clip_text_encoder", "clip_tokenizer"):
        assert sorted(p.name for p in (stage1 / name).iterdir()) == sorted(p.name for p in (comps / name).iterdir())
        for f in (comps / name).iterdir():
            assert (stage1 / name / f.name).read_bytes() == f.read_bytes()
    assert json.loads((stage1 / "components.json").read_text())["clip_text_encoder"] == str(clip_model_dir)
    pipe = StableDiffusionPipeline.from_pretrained(str(stage1), safety_checker=None, requires_safety_checker=False)
    assert pipe.image_encoder is not None and not hasattr(pipe, "clip_text_encoder")
    # stage 2 on the exported folder: the ensemble is on with no --clip
    data = write_seg_shards(tmp_path / "seg", per_class=2, classes=("scratch", "hole"))
    invoke(app, "train-seg", "--diffusion", str(stage1), "--data", str(data), "--config", "tiny", "--out",
           str(tmp_path / "seg-model"), "--classes", "scratch,hole", "--max-steps", "2")
    s = invoke(app, "predict", "--model", str(tmp_path / "seg-model"), "--classes", "scratch,crack", "--data",
               str(data), "--limit", "2", "--out", str(tmp_path / "pred"))
    meta = json.loads((tmp_path / "pred" / "meta.json").read_text())
    assert s["ensemble"]["on"] is True and meta["ensemble"]["on"] is True
    assert meta["ensemble"]["clip_text"] == f"{stage1}/clip_text_encoder"
    # a stale tower does not survive an export from components without one
    e = invoke(app, "export", "--run", str(run), "--out", str(stage1), "--components", str(tiny_components))
    assert e["clip_text_encoder"] is False and not (stage1 / "clip_text_encoder").exists()
