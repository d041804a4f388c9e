"""Losses: HF Mask2Former's set criterion on records with pixels, an image-level label loss on records
without, and ODISE's caption grounding loss.

- `SetCriterion`: `transformers`' `Mask2FormerLoss` (Hungarian matching on point samples; class CE with the
  no-object weight, sigmoid BCE and dice on importance-sampled points; deep supervision) on the images that
  have pixel targets (normal images included: all queries should say no-object). Weighted as Mask2Former:
  class 2, mask 5, dice 5 (the paper's "L_mask + 0.5 L_cls" keeps this mask:class ratio of the two terms).
  The ignore region (pixels of defect types outside the trained set, targets.py) is no part of any term: the
  matching cost and the mask BCE/dice skip every point whose prediction touches it (the region on the mask
  grid, dilated by one cell for the bilinear sampling), importance sampling never picks such a point, and an
  unmatched query whose predicted mask lies mostly (`ignore_query_overlap`) inside it gets no no-object class
  loss. So an unseen defect is never taught as background or no-object, and what the model predicts inside it
  does not change the loss (tests/models/test_seg_model.py checks this directly).
- `label_loss`: for images whose defects are known only by name (boxes, image labels): BCE between the
  trained classes present and the image score of each class, max over queries of its softmax probability.
- `grounding_loss`: image i vs caption j similarity = mean over j's defect terms of the query-softmax-weighted
  sum of mask-term similarities; symmetric cross-entropy over the batch, captions with the same term set
  counting as positives (ODISE's form; terms from the taxonomy vocabulary, vocabulary.py).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from .config import mask2former_config
from .targets import Target


def _ignore_grids(ignore: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, R, R) ignore masks -> (core, dilated) on a (h, w) prediction grid: a cell is in `core` when any of
    its pixels is ignored; `dilated` adds the cells next to it (bilinear sampling reads a point's 4 neighbours)."""
    core = (F.adaptive_max_pool2d(ignore.float(), size) > 0).float()
    return core, F.max_pool2d(core, 3, stride=1, padding=1)


def _sample(grid: torch.Tensor, coords: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """(N, C, h, w) sampled at (N, P, 2) coordinates in [0, 1] -> (N, C, P)."""
    return F.grid_sample(grid, 2.0 * coords[:, :, None] - 1.0, mode=mode, align_corners=False)[..., 0]


def _build_loss(config, weights: dict):
    """HF's Mask2FormerLoss with an ignore region (see the module docstring); `loss.ignore` (B, 1, R, R) or None
    is set by the caller for one forward."""
    from transformers.models.mask2former.modeling_mask2former import Mask2FormerHungarianMatcher, Mask2FormerLoss

    class Matcher(Mask2FormerHungarianMatcher):
        owner = None

        @torch.no_grad()
        def forward(self, masks_queries_logits, class_queries_logits, mask_labels, class_labels):
            from scipy.optimize import linear_sum_assignment
            ignore = self.owner.ignore
            valid = None
            if ignore is not None:
                valid = 1 - _ignore_grids(ignore.to(masks_queries_logits.device), masks_queries_logits.shape[-2:])[1]
            indices = []
            for i in range(masks_queries_logits.shape[0]):
                if mask_labels[i].shape[0] == 0:
                    indices.append((np.zeros(0, np.int64), np.zeros(0, np.int64)))
                    continue
                probs = class_queries_logits[i].float().softmax(-1)
                cost_class = -probs[:, class_labels[i]]
                coords = torch.rand(1, self.num_points, 2, device=masks_queries_logits.device)
                pred = _sample(masks_queries_logits[i][None].float(), coords)[0]  # (Q, P)
                tgt = _sample(mask_labels[i][None].float().to(pred.device), coords)[0]  # (T, P)
                w = (_sample(valid[i][None], coords, "nearest")[0, 0] if valid is not None
                     else torch.ones(self.num_points, device=pred.device))  # (P,)
                n = w.sum().clamp_min(1.0)
                pos = F.binary_cross_entropy_with_logits(pred, torch.ones_like(pred), reduction="none") * w
                neg = F.binary_cross_entropy_with_logits(pred, torch.zeros_like(pred), reduction="none") * w
                cost_mask = (pos @ tgt.T + neg @ (1 - tgt).T) / n
                p = pred.sigmoid() * w
                cost_dice = 1 - (2 * p @ tgt.T + 1) / (p.sum(-1)[:, None] + (tgt * w).sum(-1)[None, :] + 1)
                cost = self.cost_mask * cost_mask + self.cost_class * cost_class + self.cost_dice * cost_dice
                big = torch.finfo(cost.dtype).max
                cost = torch.nan_to_num(cost, nan=big, posinf=big, neginf=big)
                indices.append(linear_sum_assignment(cost.cpu()))
            return [(torch.as_tensor(a, dtype=torch.int64), torch.as_tensor(b, dtype=torch.int64)) for a, b in indices]

    class Loss(Mask2FormerLoss):
        ignore: torch.Tensor | None = None
        overlap: float = 0.5

        def loss_masks(self, masks_queries_logits, mask_labels, indices, num_masks):
            if self.ignore is None:
                return super().loss_masks(masks_queries_logits, mask_labels, indices, num_masks)
            b_idx, q_idx = self._get_predictions_permutation_indices(indices)
            tb_idx, t_idx = self._get_targets_permutation_indices(indices)
            pred = masks_queries_logits[b_idx, q_idx][:, None]  # (N, 1, h, w)
            target, _ = self._pad_images_to_max_in_batch(mask_labels)
            target = target[tb_idx, t_idx][:, None]
            dilated = _ignore_grids(self.ignore.to(pred.device), pred.shape[-2:])[1][b_idx]  # (N, 1, h, w)
            with torch.no_grad():
                n = pred.shape[0]
                over = int(self.num_points * self.oversample_ratio)
                coords = torch.rand(n, over, 2, device=pred.device)
                unc = -_sample(pred.float(), coords)[:, 0].abs()
                unc = unc.masked_fill(_sample(dilated, coords, "nearest")[:, 0] > 0, float("-inf"))
                k = int(self.importance_sample_ratio * self.num_points)
                top = torch.topk(unc, k=k, dim=1)[1]
                coords = torch.gather(coords, 1, top[..., None].expand(-1, -1, 2))
                if self.num_points - k > 0:
                    coords = torch.cat([coords, torch.rand(n, self.num_points - k, 2, device=pred.device)], dim=1)
                labels = _sample(target.float(), coords)[:, 0]
                w = 1 - _sample(dilated, coords, "nearest")[:, 0]
            logits = _sample(pred.float(), coords)[:, 0]
            bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none") * w
            loss_mask = (bce.sum(1) / w.sum(1).clamp_min(1.0)).sum() / num_masks
            probs = logits.sigmoid() * w
            dice = 1 - (2 * (probs * labels).sum(-1) + 1) / (probs.sum(-1) + (labels * w).sum(-1) + 1)
            return {"loss_mask": loss_mask, "loss_dice": dice.sum() / num_masks}

        def loss_labels(self, class_queries_logits, class_labels, indices):
            if self.ignore is None:
                return super().loss_labels(class_queries_logits, class_labels, indices)
            logits = class_queries_logits
            bsz, nq, _ = logits.shape
            idx = self._get_predictions_permutation_indices(indices)
            target = torch.full((bsz, nq), self.num_labels, dtype=torch.int64, device=logits.device)
            target[idx] = torch.cat([t[j] for t, (_, j) in zip(class_labels, indices)]).to(logits.device)
            keep = torch.ones(bsz, nq, device=logits.device)
            masks = self.current_masks
            core = _ignore_grids(self.ignore.to(masks.device), masks.shape[-2:])[0]  # (B, 1, h, w)
            with torch.no_grad():
                binary = (masks > 0).float()
                inside = (binary * core).sum((-1, -2)) / binary.sum((-1, -2)).clamp_min(1.0)
                drop = (inside >= self.overlap) & (target == self.num_labels)
            keep = keep.masked_fill(drop, 0.0)
            ce = F.cross_entropy(logits.transpose(1, 2).float(), target, reduction="none")
            w = self.empty_weight[target] * keep
            return {"loss_cross_entropy": (ce * w).sum() / w.sum().clamp_min(1e-6)}

        def forward(self, masks_queries_logits, class_queries_logits, mask_labels, class_labels,
                    auxiliary_predictions=None):
            self.current_masks = masks_queries_logits.detach()
            losses = super().forward(masks_queries_logits, class_queries_logits, mask_labels, class_labels)
            for i, aux in enumerate(auxiliary_predictions or []):
                self.current_masks = aux["masks_queries_logits"].detach()
                part = super().forward(aux["masks_queries_logits"], aux["class_queries_logits"], mask_labels,
                                       class_labels)
                losses.update({f"{k}_{i}": v for k, v in part.items()})
            return losses

    loss = Loss(config, weight_dict=weights)
    matcher = Matcher(cost_class=config.class_weight, cost_dice=config.dice_weight, cost_mask=config.mask_weight,
                      num_points=config.train_num_points)
    object.__setattr__(matcher, "owner", loss)  # a plain reference, not a submodule (no cycle)
    loss.matcher = matcher
    return loss


class SetCriterion(torch.nn.Module):
    """Weighted sum of Mask2FormerLoss over all decoder layers for the images with pixel targets."""

    def __init__(self, cfg: dict, num_classes: int):
        super().__init__()
        config = mask2former_config(cfg, num_classes)
        self.weights = {"loss_cross_entropy": cfg["class_weight"], "loss_mask": cfg["mask_weight"],
                        "loss_dice": cfg["dice_weight"]}
        self.loss = _build_loss(config, self.weights)
        self.loss.overlap = float(cfg.get("ignore_query_overlap", 0.5))
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
        ignores = [targets[i].ignore for i in rows]
        if any(g is not None for g in ignores):
            side = mask_labels[0].shape[-1]
            self.loss.ignore = torch.stack([torch.zeros(side, side) if g is None else torch.from_numpy(g).float()
                                            for g in ignores])[:, None].to(device)
        else:
            self.loss.ignore = None
        aux = [{"masks_queries_logits": m, "class_queries_logits": c} for m, c in zip(masks[:-1], logits[:-1])]
        try:
            parts = self.loss(masks[-1].float(), logits[-1].float(), mask_labels, class_labels,
                              auxiliary_predictions=aux)
        finally:
            self.loss.ignore = None
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
