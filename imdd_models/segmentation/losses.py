"""Losses: HF Mask2Former's set criterion on records with pixels, an image-level label loss on records
without, and ODISE's caption grounding loss.

- `SetCriterion`: `transformers`' `Mask2FormerLoss` (Hungarian matching on point samples; class CE with the
  no-object weight, sigmoid BCE and dice on importance-sampled points; deep supervision) on the images that
  have pixel targets (normal images included: all queries should say no-object). Weighted as Mask2Former:
  class 2, mask 5, dice 5 (the paper's "L_mask + 0.5 L_cls" keeps this mask:class ratio of the two terms).
- `label_loss`: for images whose defects are known only by name (boxes, image labels): BCE between the
  trained classes present and the image score of each class, max over queries of its softmax probability.
- `grounding_loss`: image i vs caption j similarity = mean over j's defect terms of the query-softmax-weighted
  sum of mask-term similarities; symmetric cross-entropy over the batch, captions with the same term set
  counting as positives (ODISE's form; terms from the taxonomy vocabulary, vocabulary.py).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .config import mask2former_config
from .targets import Target


class SetCriterion(torch.nn.Module):
    """Weighted sum of Mask2FormerLoss over all decoder layers for the images with pixel targets."""

    def __init__(self, cfg: dict, num_classes: int):
        super().__init__()
        from transformers.models.mask2former.modeling_mask2former import Mask2FormerLoss
        config = mask2former_config(cfg, num_classes)
        self.weights = {"loss_cross_entropy": cfg["class_weight"], "loss_mask": cfg["mask_weight"],
                        "loss_dice": cfg["dice_weight"]}
        self.loss = Mask2FormerLoss(config, weight_dict=self.weights)
        # Normalise by this process's mask count: HF's version all-reduces it, which would hang a process
        # whose batch has no pixel targets while another's has.
        self.loss.get_num_masks = lambda labels, device: torch.clamp(
            torch.as_tensor(float(sum(len(c) for c in labels)), device=device), min=1)
        self.num_classes = num_classes

    def forward(self, out: dict, targets: list[Target], rows: list[int]) -> torch.Tensor:
        masks = [m[rows] for m in out["masks"]]
        logits = [c[rows] for c in out["logits"]]
        device = masks[-1].device
        mask_labels = [torch.from_numpy(targets[i].masks).to(device) for i in rows]
        class_labels = [torch.as_tensor(targets[i].classes, dtype=torch.long, device=device) for i in rows]
        aux = [{"masks_queries_logits": m, "class_queries_logits": c} for m, c in zip(masks[:-1], logits[:-1])]
        parts = self.loss(masks[-1].float(), logits[-1].float(), mask_labels, class_labels, auxiliary_predictions=aux)
        total = sum(self.weights[k.rsplit("_", 1)[0] if k[-1].isdigit() else k] * v for k, v in parts.items())
        return total / len(out["masks"])


def image_class_scores(logits: torch.Tensor) -> torch.Tensor:
    """(B, Q, K+1) -> (B, K): per class, the highest probability any query gives it."""
    return logits.float().softmax(-1)[..., :-1].amax(dim=1)


def label_loss(out: dict, targets: list[Target], rows: list[int], num_classes: int) -> torch.Tensor:
    """Mean over decoder layers of the BCE between image class scores and the labels of `rows`."""
    y = torch.zeros(len(rows), num_classes, device=out["logits"][-1].device)
    for r, i in enumerate(rows):
        y[r, targets[i].labels] = 1.0
    losses = [F.binary_cross_entropy(image_class_scores(c[rows]).clamp(1e-6, 1 - 1e-6), y) for c in out["logits"]]
    return torch.stack(losses).mean()


def grounding_loss(out: dict, targets: list[Target], term_embeds: dict[str, torch.Tensor], scale: torch.Tensor,
                   rows: list[int]) -> torch.Tensor | None:
    """Symmetric image-caption contrastive loss over `rows` (images whose captions name trained defects);
    None when fewer than two distinct term sets make it uninformative. `term_embeds` are projected units."""
    sets = [tuple(sorted(targets[i].terms)) for i in rows]
    if len(set(sets)) < 2:
        return None
    positives = torch.tensor([[float(a == b) for b in sets] for a in sets], device=scale.device)
    losses = []
    for emb in out["embeds"]:
        e = F.normalize(emb[rows].float(), dim=-1)  # (N, Q, E)
        sim = torch.zeros(len(rows), len(rows), device=e.device)
        for j, terms in enumerate(sets):
            words = torch.stack([term_embeds[t] for t in terms]).to(e.device)  # (W, E)
            s = scale * torch.einsum("nqe,we->nqw", e, words)
            sim[:, j] = (s.softmax(dim=1) * s).sum(dim=1).mean(dim=-1)
        img_to_txt = -(positives / positives.sum(1, keepdim=True) * sim.log_softmax(dim=1)).sum(1).mean()
        txt_to_img = -(positives / positives.sum(0, keepdim=True) * sim.log_softmax(dim=0)).sum(0).mean()
        losses.append(0.5 * (img_to_txt + txt_to_img))
    return torch.stack(losses).mean()
