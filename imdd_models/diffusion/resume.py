"""What a training run is, for `--resume`: the settings that must not change when a run continues (batch,
seed, data, processes, and the components its latents were encoded with: its identity) and the training
recipe (the config's values). A difference in either is refused in one line naming every difference: the
continued run would be one no uninterrupted run is."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from imdd_build.errors import RunError

from ..data.sources import data_spec


class TrainError(RunError):
    """A run that cannot start (existing checkpoints without --resume, changed settings on resume, ...)."""


IDENTITY_KEYS = ("batch_size", "gradient_accumulation_steps", "seed", "shuffle_buffer", "flip", "data", "split",
                 "where", "world_size", "num_workers")


# Config values a resumed run may change: where and how often it saves and logs, how far it goes, and speed
# settings that leave the arithmetic alone. Any other value (learning rate, EMA, loss, augmentation) changed on
# --resume would make the continued run something no uninterrupted run is.
RESUME_MAY_CHANGE = ("epochs", "checkpoint_every", "checkpoint_every_minutes", "keep_checkpoints", "log_every",
                     "gradient_checkpointing", "compile", "num_workers")


def check_same_recipe(checkpoint: Path, saved: dict | None, config: dict) -> None:
    """One RunError line naming every training value that differs from the checkpoint's (runs saved before the
    config was recorded pass)."""
    if not saved:
        return
    diffs = [f"{k}: {saved[k]!r} -> {v!r}" for k, v in config.items()
             if k in saved and saved[k] != v and k not in RESUME_MAY_CHANGE]
    if diffs:
        raise TrainError(f"{checkpoint}: --resume with another training recipe than the saved run ({'; '.join(diffs)});"
                         " resume with the same --config to continue exactly, or start a new --out")


def data_identity(source) -> dict:
    """What the data is, for the resume check: its spec, kind and shard list (a hash of the locations; local
    paths resolved, shard paths relative to the folder, so `./latents` and `/abs/latents` are the same data)."""
    local = Path(str(source.spec))
    spec = data_spec(source.spec)

    def where(location: str) -> str:
        path = Path(location)
        if local.is_dir() and path.exists():
            return os.path.relpath(path.resolve(), local.resolve())
        return location

    names = "\n".join(f"{s.kind}:{where(s.location)}:{s.split}:{s.index}:{s.count}" for s in source.shards)
    return {"spec": spec, "kind": source.kind, "shards": len(source.shards),
            "shards_sha256": hashlib.sha256(names.encode()).hexdigest()[:16]}


def check_identity(checkpoint: Path, saved: dict | None, identity: dict) -> None:
    """One RunError line naming every setting that differs from the checkpoint's run."""
    if saved is None:  # a checkpoint of the earlier layout: world size and workers were all it kept
        return
    diffs = [f"{k}: {saved.get(k)!r} -> {identity[k]!r}" for k in IDENTITY_KEYS if saved.get(k) != identity[k]]
    if diffs:
        raise TrainError(f"{checkpoint}: --resume with different settings than the saved run ({'; '.join(diffs)}); "
                         "resume with the same to continue exactly, or start a new --out")


# What makes two components folders encode differently: the frozen parts' sources (a hub id or path; "random")
# and, for random parts, the seed that drew them. Descriptive fields (reasons, versions) are not compared.
_COMPONENT_IDENTITY = ("preset", "vae", "image_encoder", "text_encoder", "seed", "resolution", "scaling_factor",
                       "latent_channels", "image_embed_dim")


def check_same_components(spec: str, made_with: dict, manifest: dict) -> None:
    """Latents encoded by one components folder and trained with another teach the U-Net a latent space (and
    CLIP embeddings) that the saved pipeline's VAE and image tower do not produce: RunError naming what differs.
    Fields either side lacks (folders from elsewhere, older latents) are not compared."""
    random_parts = any(made_with.get(k) == "random" for k in ("vae", "image_encoder", "text_encoder"))
    diffs = [f"{k}: {made_with[k]!r} -> {manifest[k]!r}" for k in _COMPONENT_IDENTITY
             if k in made_with and k in manifest and made_with[k] != manifest[k] and (k != "seed" or random_parts)]
    if diffs:
        raise RunError(f"{spec}: latents encoded with other components than --components ({', '.join(diffs)}); "
                       "precompute again with these components, or pass the ones the latents were made with")
