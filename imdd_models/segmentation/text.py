"""Frozen text embeddings of class names and caption terms, from the diffusion model's own CLIP text tower.

Prompt ensembling (as CLIP and ODISE do): a name is put into words through the taxonomy (`color_defect` ->
"colour defect"; names outside the taxonomy are used as given, which is what makes unseen classes work), and
for a taxonomy type also through a few of its synonyms; every wording is filled into each inspection template
(TEMPLATES), encoded (the pooled EOS embedding), and the unit vectors are averaged. Nothing is downloaded: the
text tower is the one in the stage-1 (or SD-1.x) folder. Results are cached per name. The CLIP classifier of
the ensemble (clip_head.py) uses the same prompts with its own text tower.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .vocabulary import class_wordings

TEMPLATES = (
    "a photo of a {} defect.",
    "an industrial inspection image showing a {}.",
    "a {} on the surface.",
    "a close-up photo of a {} on a manufactured part.",
    "a quality inspection photo of a product with a {}.",
    "a surface with a {} defect.",
)
MAX_WORDINGS = 3  # the display name and up to two synonyms


def prompts_for(name: str) -> list[str]:
    """Every template filled with every wording of `name` (display name first, then taxonomy synonyms)."""
    return [t.format(w) for w in class_wordings(name, MAX_WORDINGS) for t in TEMPLATES]


class TextEmbedder:
    """names -> (N, D) unit vectors; `dim` is the text tower's width."""

    def __init__(self, text_encoder, tokenizer):
        self.text_encoder, self.tokenizer = text_encoder, tokenizer
        self.dim = int(text_encoder.config.hidden_size)
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def _encode(self, name: str) -> torch.Tensor:
        prompts = prompts_for(name)
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        device = next(self.text_encoder.parameters()).device
        pooled = self.text_encoder(ids.to(device)).pooler_output.float()
        return F.normalize(F.normalize(pooled, dim=-1).mean(0), dim=-1).cpu()

    def __call__(self, names: list[str] | tuple[str, ...]) -> torch.Tensor:
        for name in names:
            if name not in self._cache:
                self._cache[name] = self._encode(name)
        if not names:
            return torch.zeros(0, self.dim)
        return torch.stack([self._cache[n] for n in names])
