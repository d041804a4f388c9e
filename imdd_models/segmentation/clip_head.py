"""The frozen CLIP classifier of open-vocabulary prediction (ODISE's `PoolingCLIPHead`) and its ensemble.

Names the mask generator never trained on rest on one small projection fitted on a few base classes. ODISE
therefore also classifies every predicted mask with frozen CLIP: the image tower's dense features (every patch
token through the final LayerNorm and the visual projection, so each lands in CLIP's joint space, MaskCLIP-style)
are pooled under the query's mask (soft: the sigmoid mask resized to the token grid) and compared with CLIP text
embeddings of the names (prompt-ensembled, text.py). The two classifiers are then combined geometrically per
name (ODISE's `PoolingCLIPHead.forward`):

    p(k) ∝ p_learned(k) ^ (1 - λ_k) · p_clip(k) ^ λ_k,   λ_k = clip_alpha for trained names, clip_beta else,

over the K names, with the learned no-object probability kept as it is (CLIP has no "no defect" class here:
the objectness of a query is the mask generator's alone, the ensemble only redistributes *which* name).

The image tower is the stage-1 folder's `image_encoder/` (a `CLIPVisionModelWithProjection`). The text side must
live in the same joint space, which the diffusion text tower (`text_encoder/`, SD's CLIP-L text without its
projection) does not: it is read from `predict --clip DIR` (a saved CLIP model of the same kind as
`image_encoder/`, e.g. openai/clip-vit-base-patch32: its text tower and tokenizer are used), else from the
diffusion folder's `clip_text_encoder/` (a `CLIPTextModelWithProjection`) with `clip_tokenizer/` (else
`tokenizer/`); `imdd-models components` writes those two for a pretrained CLIP image tower (sd15) and
`train-diffusion`/`export` copy them into the model folder. Without either the ensemble is off and `predict`
says so (`ensemble.reason`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

CLIP_TEXT = "clip_text_encoder"
CLIP_TOKENIZER = "clip_tokenizer"


def clip_unavailable(root: Path, clip_text: Path | None = None) -> str | None:
    """Why a diffusion folder (and `--clip DIR`) cannot give the CLIP classifier (None when it can); reads no
    weights."""
    root = Path(root)
    for name in ("image_encoder", "feature_extractor"):
        if not (root / name).is_dir():
            return f"{root} has no {name}/"
    if clip_text is not None:
        if not (Path(clip_text) / "config.json").is_file():
            raise FileNotFoundError(f"--clip {clip_text}: not a saved CLIP model (no config.json)")
        return None
    if not (root / CLIP_TEXT).is_dir():
        return (f"no CLIP text tower: give --clip DIR (the CLIP model of {root}/image_encoder, e.g. "
                f"openai/clip-vit-base-patch32 saved locally) or put one in {root}/{CLIP_TEXT}/ (`imdd-models "
                "components --clip-text` writes it; by default only for a pretrained image tower)")
    return None


class ClipClassifier(torch.nn.Module):
    """Frozen CLIP image + text towers: mask-pooled region embeddings classified against name embeddings."""

    def __init__(self, vision, text, tokenizer, mean, std, input_size: int, logit_scale: float = 100.0):
        super().__init__()
        self.vision, self.text_model, self.tokenizer = vision, text, tokenizer
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.input_size, self.logit_scale = int(input_size), float(logit_scale)
        self.requires_grad_(False).eval()
        self._names: dict[str, torch.Tensor] = {}

    @classmethod
    def from_folder(cls, root: Path, device="cpu", logit_scale: float = 100.0, input_scale: int = 2,
                    clip_text: Path | None = None) -> "ClipClassifier":
        """The towers of `root` (the text tower of `clip_text` when given); the images at `input_scale` x the
        tower's size (more tokens: finer pooling)."""
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer, CLIPVisionModelWithProjection

        from .._compat import image_processor_class
        root = Path(root)
        reason = clip_unavailable(root, clip_text)
        if reason:
            raise FileNotFoundError(reason)
        vision = CLIPVisionModelWithProjection.from_pretrained(str(root / "image_encoder"))
        text_dir = Path(clip_text) if clip_text is not None else root / CLIP_TEXT
        text = CLIPTextModelWithProjection.from_pretrained(str(text_dir))
        if text.config.projection_dim != vision.config.projection_dim:
            raise FileNotFoundError(f"{text_dir}: projection {text.config.projection_dim} != image_encoder's "
                                    f"{vision.config.projection_dim} (not the same CLIP model)")
        # a tokenizer folder: the slow files (vocab.json) or transformers 5's save_pretrained (tokenizer.json only)
        tok_dir = next((d for d in ((Path(clip_text) if clip_text is not None else None), root / CLIP_TOKENIZER,
                                    root / "tokenizer")
                        if d is not None and any((d / f).is_file() for f in ("vocab.json", "tokenizer.json"))), None)
        if tok_dir is None:
            raise FileNotFoundError(f"{root}: no CLIP tokenizer in {CLIP_TOKENIZER}/ or tokenizer/")
        tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
        proc = image_processor_class().from_pretrained(str(root / "feature_extractor"))
        size = int(vision.config.image_size) * max(1, int(input_scale))
        return cls(vision, text, tokenizer, proc.image_mean, proc.image_std, size, logit_scale).to(device)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @torch.no_grad()
    def dense(self, images: list[Image.Image]) -> torch.Tensor:
        """(B, D, g, g) unit region vectors in CLIP's joint space, one per patch token."""
        arr = np.stack([np.asarray(im.convert("RGB").resize((self.input_size, self.input_size),
                                                            Image.Resampling.BICUBIC), dtype=np.float32)
                        for im in images]) / 255.0
        x = (torch.from_numpy(arr).permute(0, 3, 1, 2).to(self.device) - self.mean) / self.std
        dtype = next(self.vision.parameters()).dtype
        hidden = self.vision.vision_model(pixel_values=x.to(dtype), interpolate_pos_encoding=True).last_hidden_state
        tokens = self.vision.visual_projection(self.vision.vision_model.post_layernorm(hidden[:, 1:]))
        g = int(round(tokens.shape[1] ** 0.5))
        return F.normalize(tokens.float(), dim=-1).transpose(1, 2).reshape(len(images), -1, g, g)

    @torch.no_grad()
    def names(self, names: list[str]) -> torch.Tensor:
        """(K, D) unit text vectors, prompt-ensembled (text.py's templates and taxonomy synonyms)."""
        from .text import prompts_for
        for name in names:
            if name not in self._names:
                prompts = prompts_for(name)
                ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                                     truncation=True, return_tensors="pt").input_ids.to(self.device)
                emb = F.normalize(self.text_model(ids).text_embeds.float(), dim=-1).mean(0)
                self._names[name] = F.normalize(emb, dim=-1).cpu()
        return torch.stack([self._names[n] for n in names]).to(self.device)

    @torch.no_grad()
    def logits(self, dense: torch.Tensor, mask_logits: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """(B, Q, K) CLIP logits of each query's region: dense (B, D, g, g), masks (B, Q, h, w), text (K, D)."""
        g = dense.shape[-1]
        w = F.interpolate(mask_logits.float(), size=(g, g), mode="bilinear", align_corners=False).sigmoid()
        pooled = torch.einsum("bqhw,bdhw->bqd", w, dense) / (w.sum((-1, -2))[..., None] + 1e-6)
        return self.logit_scale * F.normalize(pooled, dim=-1) @ text.T


def ensemble(learned_logits: torch.Tensor, clip_logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, Q, K+1) learned logits (last = no-object), (B, Q, K) CLIP logits, (K,) CLIP weight per name ->
    (B, Q, K+1) probabilities: the geometric ensemble over the K names, no-object kept from the learned head."""
    p = learned_logits.float().softmax(-1)
    null = p[..., -1:]
    learned = (p[..., :-1] / (1 - null).clamp_min(1e-8)).clamp_min(1e-8)
    clip = clip_logits.float().softmax(-1).clamp_min(1e-8)
    w = weights.to(learned.device, torch.float32)
    mixed = torch.exp((1 - w) * learned.log() + w * clip.log())
    mixed = mixed / mixed.sum(-1, keepdim=True)
    return torch.cat([mixed * (1 - null), null], dim=-1)
