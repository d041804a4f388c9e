"""The implicit captioner: size, alignment loss, the p=0.5 switch, and how it conditions the U-Net."""

from __future__ import annotations

import torch

from imdd_models.components import ImplicitCaptioner, captioner_loss, choose_implicit, pseudo_context


def test_sd15_captioner_is_the_papers_0_33m_mlp():
    captioner = ImplicitCaptioner(512, 256, 768)
    assert sum(p.numel() for p in captioner.parameters()) == 328_704
    layers = list(captioner.net)
    assert [type(m).__name__ for m in layers] == ["Linear", "GELU", "Linear"]
    assert (layers[0].in_features, layers[0].out_features, layers[2].out_features) == (512, 256, 768)
    assert captioner(torch.zeros(3, 512)).shape == (3, 768)


def test_loss_is_0_3_times_one_minus_cosine():
    e = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    assert captioner_loss(e * 5, e).item() == 0.0
    assert abs(captioner_loss(-e, e).item() - 0.6) < 1e-6
    orthogonal = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0]])
    assert abs(captioner_loss(orthogonal, e).item() - 0.3) < 1e-6
    mixed = torch.stack([e[0], -e[1], orthogonal[2]])  # cos 1, -1, 0 -> mean(1 - cos) = 1
    assert abs(captioner_loss(mixed, e).item() - 0.3) < 1e-6


def test_switch_picks_the_implicit_branch_half_the_time_reproducibly():
    picks = choose_implicit(20_000, 0.5, torch.Generator().manual_seed(0))
    assert picks.dtype == torch.bool and abs(picks.float().mean().item() - 0.5) < 0.015
    assert torch.equal(picks, choose_implicit(20_000, 0.5, torch.Generator().manual_seed(0)))
    assert not choose_implicit(100, 0.0).any() and choose_implicit(100, 1.0).all()


def test_pseudo_context_adds_t_imp_onto_every_token_of_the_empty_caption():
    uncond = torch.randn(1, 77, 8)
    t_imp = torch.randn(2, 8)
    ctx = pseudo_context(t_imp, uncond)
    assert ctx.shape == (2, 77, 8)
    assert torch.allclose(ctx[1, 5], uncond[0, 5] + t_imp[1])


def test_save_and_load_round_trip(tmp_path):
    captioner = ImplicitCaptioner(16, 8, 4)
    captioner.save_pretrained(tmp_path / "implicit_captioner")
    loaded = ImplicitCaptioner.from_pretrained(tmp_path / "implicit_captioner")
    x = torch.randn(2, 16)
    assert torch.equal(loaded(x), captioner(x)) and loaded.config == {"in_dim": 16, "hidden_dim": 8, "out_dim": 4}


def test_implicit_samples_ignore_their_caption_and_dropped_ones_see_only_the_empty_caption(tiny_components):
    from imdd_models.components import load_components
    from imdd_models.diffusion.model import DiffusionModel
    comps = load_components(tiny_components)
    torch.manual_seed(0)
    model = DiffusionModel(comps.new_unet(), comps.new_captioner()).eval()
    noisy, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 500])
    uncond = comps.text_states(comps.tokenize([""]))[0]
    text_a = comps.text_states(comps.tokenize(["a scratch", "a hole"]))[0]
    text_b = comps.text_states(comps.tokenize(["a stain", "a crack"]))[0]
    embeds = torch.randn(2, 512)
    yes, no = torch.tensor([True, True]), torch.tensor([False, False])
    with torch.no_grad():
        implicit_a, _ = model(noisy, t, text_a, uncond, embeds, yes, no)
        implicit_b, _ = model(noisy, t, text_b, uncond, embeds, yes, no)
        caption_a, _ = model(noisy, t, text_a, uncond, embeds, no, no)
        caption_b, _ = model(noisy, t, text_b, uncond, embeds, no, no)
        dropped, _ = model(noisy, t, text_a, uncond, embeds, yes, yes)
        empty, _ = model(noisy, t, uncond.expand(2, -1, -1), uncond, embeds, no, no)
    assert torch.equal(implicit_a, implicit_b)  # the caption does not reach an implicit sample
    assert not torch.allclose(caption_a, caption_b)
    assert not torch.allclose(implicit_a, caption_a)
    assert torch.allclose(dropped, empty)
