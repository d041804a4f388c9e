"""The per-class maps of `predict` (postprocess.semantic_maps): in [0, 1] and never saturated into ties."""

from __future__ import annotations

import torch

from imdd_models.evaluation.anomaly import roc_auc
from imdd_models.segmentation.postprocess import semantic_maps, semantic_maps_from_probs


def test_many_overlapping_queries_keep_the_pixel_ranking():
    """16 undecided queries (an untrained head) over a canvas whose left half they mark more strongly: the
    plain sum clipped to [0, 1] tied the whole canvas at 1.0 (pixel AUROC 0.5 whatever the masks said)."""
    q, k, side = 16, 5, 8
    logits = torch.zeros(1, q, k + 1)  # every class and no-object equally likely: p = 1/6 per query
    masks = torch.full((1, q, side, side), -0.5)
    masks[..., : side // 2] = 2.0  # the left half is marked more strongly by every query
    maps = semantic_maps(masks, logits, 16)
    assert maps.shape == (1, k, 16, 16)
    assert float(maps.min()) >= 0 and float(maps.max()) < 1  # the clipped sum was 1.0 everywhere here
    truth = torch.zeros(16, 16, dtype=torch.bool)
    truth[:, :8] = True
    assert roc_auc(maps[0].amax(0).numpy(), truth.numpy()) > 0.9


def test_one_confident_query_gives_its_probability_times_its_mask():
    """Mask2Former's value where one query holds the pixel: p * sigmoid(mask), as before."""
    probs = torch.tensor([[[0.9, 0.0, 0.1], [0.0, 0.0, 1.0]]])  # query 0: class 0; query 1: no-object
    masks = torch.full((1, 2, 4, 4), 3.0)
    maps = semantic_maps_from_probs(masks, probs, 4)
    expected = 0.9 * torch.sigmoid(torch.tensor(3.0))
    assert torch.allclose(maps[0, 0], torch.full((4, 4), float(expected)), atol=1e-5)
    assert torch.allclose(maps[0, 1], torch.zeros(4, 4), atol=1e-6)
