"""Stage-2 pieces without training: preset size, caption terms, targets, the feature extractor, the adapter,
the losses."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from imdd_models.components.presets import SD15_UNET
from imdd_models.segmentation.adapter import BackboneAdapter
from imdd_models.segmentation.config import get_config
from imdd_models.segmentation.features import DiffusionFeatureExtractor, describe_taps
from imdd_models.segmentation.losses import grounding_loss
from imdd_models.segmentation.model import MaskGenerator, count_trainable
from imdd_models.segmentation.targets import Target, build_target
from imdd_models.segmentation.vocabulary import caption_terms, class_display_name
from seg_fixtures import write_diffusion_folder

SD_VAE = {"block_out_channels": [128, 256, 512, 512]}


def test_paper_preset_counts_about_45m_trainable_parameters():
    taps = describe_taps(SD15_UNET, SD_VAE)
    # ODISE's taps for SD1.5 at 512: 2560@64 (joins 32), 1920@32, 960@16, 640@8, plus the VAE's 256@4 and 512@8
    assert [(t.channels, t.stride) for t in taps] == [(256, 4), (512, 8), (2560, 64), (1920, 32), (960, 16), (640, 8)]
    counts = count_trainable(get_config("paper"), taps, text_dim=768)
    assert 43e6 < counts["total"] < 47e6, counts
    assert counts["transformer_decoder"] > counts["pixel_decoder"] > 5e6  # the HF Mask2Former pieces
    tiny = count_trainable(get_config("tiny"), taps, text_dim=768)
    assert tiny["total"] < 1e6
    with pytest.raises(ValueError, match="--config huge: neither a preset \\(paper, tiny, small\\) nor a file"):
        get_config("huge")


@pytest.mark.parametrize("caption, expected", [
    ("A metal plate showing a scratch defect, thin, reading as a scratch- or crack-like mark.", ["scratch"]),
    ("A woven fabric with no visible defects; it shows no scratches, cracks, holes, stains or contamination.", []),
    ("Uniform color and texture around the center; an oil spot and rust, but no dents.", ["oil_spot", "rust"]),
    ("Two holes next to a crack-shaped stain. The surface is free of scratches.", ["hole", "stain"]),
])
def test_caption_terms_follow_the_taxonomy_vocabulary(caption, expected):
    assert [t.type for t in caption_terms(caption)] == expected


def test_class_names_become_words():
    assert class_display_name("color_defect") == "colour defect"
    assert class_display_name("scratches") == "scratch"  # a synonym
    assert class_display_name("burr_on_gear") == "burr on gear"  # outside the taxonomy: as given


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


def test_targets_per_class_regions_and_no_fake_masks():
    index = {"scratch": 0, "hole": 1}
    cmask = np.zeros((512, 512), np.uint8)
    cmask[10:50, 10:50] = 1       # scratch, two regions
    cmask[100:140, 300:340] = 1
    cmask[400:480, 400:480] = 2   # hole
    cmask[200:210, 200:210] = 3   # crack: not a trained class
    rec = {"key": "a", "defect_types": ["scratch", "hole", "crack"], "class_mask": {"bytes": _png(cmask)},
           "label": "defective", "caption": "a scratch and a hole and a crack"}
    t = build_target(rec, index, 64, max_segments=8)
    assert sorted(t.classes) == [0, 0, 1] and t.masks.shape == (3, 64, 64) and t.labels == [0, 1]
    assert t.terms == ["scratch", "hole"]
    # the untrained crack is an ignore region (no loss there), not background: exactly its pixels
    assert t.ignore is not None and abs(t.ignore.sum() - 10 * 10 / 64) < 0.01
    assert t.ignore[200 // 8 - 1:210 // 8 + 1, 200 // 8 - 1:210 // 8 + 1].sum() == t.ignore.sum()
    assert build_target({**rec, "defect_types": ["scratch", "hole", "hole"]}, index, 64, 8).ignore is None
    assert abs(t.masks[t.classes.index(1)].sum() - 80 * 80 / 64) < 1  # area kept by the box resampling
    binary = Image.fromarray(((cmask > 0) * 255).astype(np.uint8), "L")
    single = build_target({"key": "b", "defect_types": ["hole"], "mask": binary, "label": "defective"}, index, 64, 8)
    assert single.classes == [1, 1, 1, 1]  # every region of the binary mask, the record's one type
    two = build_target({"key": "c", "defect_types": ["hole", "scratch"], "mask": binary, "boxes": [{}]}, index, 64, 8)
    assert not two.has_pixels and two.labels == [0, 1]  # a binary mask cannot say which region is which
    zero = Image.new("L", (512, 512), 0)  # how a WebDataset shard stores "no mask"
    flagged = build_target({"key": "z", "defect_types": ["hole"], "mask": zero, "has_mask": False}, index, 64, 8)
    assert not flagged.has_pixels and flagged.labels == [1]
    boxes = build_target({"key": "d", "defect_types": ["scratch"], "mask": None, "boxes": [{"x0": 1}]}, index, 64, 8)
    assert not boxes.has_pixels and boxes.labels == [0]
    normal = build_target({"key": "e", "defect_types": [], "label": "normal", "mask": None}, index, 64, 8)
    assert normal.has_pixels and normal.masks.shape == (0, 64, 64) and normal.classes == []


@pytest.fixture(scope="module")
def stage1_folder(tiny_components, tmp_path_factory):
    return write_diffusion_folder(tiny_components, tmp_path_factory.mktemp("stage1") / "model")


def test_extractor_on_a_stage1_folder_and_on_a_plain_sd_folder(stage1_folder, tmp_path):
    images = [Image.new("RGB", (512, 512), (120, 60, 30)), Image.new("L", (300, 200), 90)]
    ext = DiffusionFeatureExtractor.from_folder(stage1_folder)
    assert ext.conditioning == "implicit captioner" and ext.timestep == 50
    feats = ext(images)
    r = ext.resolution
    for tap in ext.taps:
        assert feats[tap.name].shape == (2, tap.channels, r // tap.stride, r // tap.stride)
        assert not feats[tap.name].requires_grad
    again = ext(images)
    assert all(torch.equal(feats[k], again[k]) for k in feats)  # fixed seeded noise: deterministic features
    captioned = ext(images, captions=["a scratch", "a hole"])
    last = ext.taps[-1].name
    assert not torch.allclose(captioned[last], feats[last])

    plain = tmp_path / "sd"  # an SD-1.x-shaped folder: no image encoder, no captioner
    shutil.copytree(stage1_folder, plain, ignore=shutil.ignore_patterns("image_encoder", "implicit_captioner",
                                                                         "components.json"))
    sd = DiffusionFeatureExtractor.from_folder(plain)
    assert sd.conditioning == "empty caption" and sd.resolution == r
    assert torch.equal(sd(images)[ext.taps[0].name], feats[ext.taps[0].name])  # same VAE taps

    with pytest.raises(FileNotFoundError, match="no weights"):
        DiffusionFeatureExtractor.from_folder(_components_only(stage1_folder, tmp_path))


def _components_only(stage1, tmp_path):
    out = tmp_path / "components-only"
    shutil.copytree(stage1, out)
    for f in (out / "unet").glob("*.safetensors"):
        f.unlink()
    return out


def test_adapter_builds_strides_4_to_32_and_the_head_runs(stage1_folder):
    ext = DiffusionFeatureExtractor.from_folder(stage1_folder)
    feats = ext([Image.new("RGB", (512, 512), 128)])
    pyramid = BackboneAdapter(ext.taps, 32)(feats)
    assert [p.shape[-1] for p in pyramid] == [ext.resolution // s for s in (4, 8, 16, 32)]
    cfg = get_config("tiny")
    model = MaskGenerator(cfg, ext.taps, text_dim=32)
    out = model(feats, torch.randn(5, 32))
    assert len(out["logits"]) == cfg["decoder_layers"]
    assert out["logits"][-1].shape == (1, cfg["num_queries"], 6)  # 5 names + no-object
    assert out["masks"][-1].shape == (1, cfg["num_queries"], ext.resolution // 4, ext.resolution // 4)


def test_grounding_loss_contrasts_term_sets():
    torch.manual_seed(0)
    embeds = torch.randn(3, 4, 8, requires_grad=True)
    out = {"embeds": [embeds]}
    targets = [Target("a", terms=["scratch"]), Target("b", terms=["hole"]), Target("c", terms=["scratch"])]
    words = {"scratch": torch.nn.functional.normalize(torch.randn(8), dim=0),
             "hole": torch.nn.functional.normalize(torch.randn(8), dim=0)}
    loss = grounding_loss(out, targets, words, torch.tensor(10.0), [0, 1, 2])
    loss.backward()
    assert torch.isfinite(loss) and embeds.grad.abs().sum() > 0
    assert grounding_loss(out, targets, words, torch.tensor(10.0), [0, 2]) is None  # one term set: no contrast


def _criterion_inputs(seed: int = 0):
    torch.manual_seed(seed)
    q, side = 6, 64
    masks = torch.randn(2, q, side // 4, side // 4) * 3
    logits = torch.randn(2, q, 3)
    ignore = np.zeros((side, side), np.float32)
    ignore[8:32, 8:32] = 1.0  # an unseen defect
    target = np.zeros((1, side, side), np.float32)
    target[0, 40:60, 40:60] = 1.0
    targets = [Target("a", classes=[0], masks=target, ignore=ignore),
               Target("b", classes=[1], masks=target[:, ::-1, ::-1].copy())]
    return masks, logits, targets


def test_an_unseen_region_does_not_change_the_loss():
    """Whatever the model predicts inside an unseen defect (any logits of the same sign there), the loss is
    the same; outside it, a change does change the loss; without the ignore region it would too."""
    from imdd_models.segmentation.losses import SetCriterion
    cfg = {**get_config("tiny"), "train_num_points": 256}
    crit = SetCriterion(cfg, num_classes=2)
    masks, logits, targets = _criterion_inputs()

    def loss(m, tg=targets):
        torch.manual_seed(5)  # the same point samples each call
        return float(crit({"masks": [m], "logits": [logits]}, tg, [0, 1]))

    base = loss(masks)
    inside = masks.clone()
    cells = inside[0, :, 2:8, 2:8]  # the ignore region on the 16x16 mask grid (pixels 8..32 / 4)
    inside[0, :, 2:8, 2:8] = cells.sign() * (cells.abs() * 7 + 5)  # other content, same decisions
    assert loss(inside) == base
    outside = masks.clone()
    outside[0, :, 10:14, 10:14] += 5
    assert loss(outside) != base
    plain = [Target(t.key, classes=t.classes, masks=t.masks) for t in targets]  # pixels as background
    assert loss(inside, plain) != loss(masks, plain)


def test_queries_on_an_unseen_defect_are_not_taught_no_object():
    """A query whose mask lies on the unseen defect gets no no-object loss: making it say "no object" with
    more confidence does not lower the loss (it would if the unseen defect counted as background)."""
    from imdd_models.segmentation.losses import SetCriterion
    cfg = {**get_config("tiny"), "train_num_points": 256}
    crit = SetCriterion(cfg, num_classes=2)
    masks, logits, targets = _criterion_inputs()
    masks[0, 5] = -10.0
    masks[0, 5, 2:8, 2:8] = 10.0  # query 5 of image 0 covers exactly the unseen region
    for b, t in enumerate(targets):  # query 0 predicts each image's real defect: the matching is fixed
        masks[b, 0] = torch.from_numpy(t.masks[0, ::4, ::4].copy()) * 20 - 10

    def loss(lg, tg):
        torch.manual_seed(5)
        return float(crit({"masks": [masks], "logits": [lg]}, tg, [0, 1]))

    sure = logits.clone()
    sure[0, 5] = torch.tensor([-5.0, -5.0, 5.0])  # query 5: confidently no-object
    unsure = logits.clone()
    unsure[0, 5] = torch.tensor([5.0, -5.0, -5.0])  # query 5: confidently class 0
    plain = [Target(t.key, classes=t.classes, masks=t.masks) for t in targets]
    assert loss(sure, targets) == pytest.approx(loss(unsure, targets), rel=1e-6)
    assert loss(sure, plain) < loss(unsure, plain)  # the old rule: the unseen defect taught as no-object


def test_seg_config_is_typed_and_read_from_yaml(tmp_path):
    from imdd_models.segmentation.config import load_seg_config
    path = tmp_path / "seg.yaml"
    path.write_text("base: tiny\nlr: 3e-4\nclip_beta: 0.8\n")
    cfg = load_seg_config(str(path))
    assert cfg.lr == 3e-4 and cfg.clip_beta == 0.8 and cfg.num_queries == get_config("tiny")["num_queries"]
    path.write_text("base: tiny\nbatch_size: 0\n")
    with pytest.raises(ValueError, match="batch_size"):
        load_seg_config(str(path))
    path.write_text("base: tiny\nqueries: 5\n")
    with pytest.raises(ValueError, match="unknown field queries"):
        load_seg_config(str(path))


def test_geometric_ensemble_weights_trained_and_unseen_names_separately():
    from imdd_models.segmentation.clip_head import ensemble
    learned = torch.tensor([[[2.0, 0.0, -1.0, 0.5]]])  # 3 names + no-object
    clip = torch.tensor([[[0.0, 3.0, 0.0]]])
    p_learned = learned.softmax(-1)
    alone = ensemble(learned, clip, torch.zeros(3))
    assert torch.allclose(alone, p_learned, atol=1e-6)  # weight 0: the learned classifier
    only_clip = ensemble(learned, clip, torch.ones(3))
    assert torch.allclose(only_clip[..., :3] / only_clip[..., :3].sum(), clip.softmax(-1), atol=1e-6)
    assert torch.allclose(only_clip[..., 3], p_learned[..., 3])  # objectness stays the mask generator's
    mixed = ensemble(learned, clip, torch.tensor([0.35, 0.65, 0.65]))
    assert torch.allclose(mixed.sum(-1), torch.ones(1, 1)) and mixed[0, 0, 1] > p_learned[0, 0, 1]
