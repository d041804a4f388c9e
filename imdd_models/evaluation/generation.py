"""Generated images against real ones: FID, KID and IS computed by torchmetrics on a user-supplied network.

The Inception weights that make FID comparable to published numbers cannot be downloaded here, so the feature
network is a file (`--feature-weights`): a TorchScript archive, e.g. the 2015 Inception as TorchScript
(NVlabs' / clean-fid's `inception-2015-12-05.pt`), or a `torch.export` program (`.pt2`). Each image is
converted to RGB, resized to `image_size` x `image_size` (PIL bicubic) and given to the network as a float32
NCHW batch of values in [0, 255]. When the network's `forward` takes `return_features` (as those Inception
exports do), `net(x, return_features=True)` gives the FID/KID features and `net(x)` the class logits for IS;
otherwise `net(x)` serves both.

IS network contract: `net(x)` returns either class logits or class probabilities (`--feature-output
logits|probs`; `auto`, the default, reads every row that is non-negative and sums to 1 as probabilities, as the
NVlabs export returns). torchmetrics' `InceptionScore` applies a softmax to what it is given, so probabilities
are handed to it as their logarithm (softmax(log p) = p); a softmax of probabilities would flatten them toward
uniform and give an IS near 1 whatever the images.

Features are extracted once and handed to torchmetrics' `FrechetInceptionDistance`, `KernelInceptionDistance`
and `InceptionScore` through an identity `feature=` module.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from imdd_build.errors import RunError

from ..data import iter_records
from ._torchmetrics import import_torchmetrics

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
FID_RELIABLE_SAMPLES = 10_000
FEATURE_OUTPUTS = ("auto", "logits", "probs")
_PROB_TOLERANCE = 1e-3


def _is_probabilities(outputs) -> bool:
    """Every row non-negative and summing to 1 (within 1e-3): a softmax output, not logits."""
    import torch
    if outputs.numel() == 0:
        return False
    sums = outputs.double().sum(1)
    return bool((outputs >= 0).all()) and bool(torch.allclose(sums, torch.ones_like(sums), atol=_PROB_TOLERANCE))


def class_logits(outputs, feature_output: str = "auto"):
    """(logits for torchmetrics' IS, what the network returned: "logits" or "probs").

    `feature_output` declares what `net(x)` returns; "auto" detects probabilities (rows >= 0 summing to 1).
    Declared probabilities that are not are a RunError (a wrong declaration would give a wrong IS)."""
    import torch
    if feature_output not in FEATURE_OUTPUTS:
        raise RunError(f"--feature-output {feature_output!r}: choose {', '.join(FEATURE_OUTPUTS)}")
    kind = feature_output
    if kind == "auto":
        kind = "probs" if _is_probabilities(outputs) else "logits"
    elif kind == "probs" and not _is_probabilities(outputs):
        raise RunError("--feature-output probs: the network's outputs are not probabilities (rows must be >= 0 "
                       "and sum to 1); give --feature-output logits")
    if kind == "probs":
        return torch.log(outputs.double().clamp_min(1e-30)), kind
    return outputs, kind


class FeatureNet:
    """A loaded network called on image batches: (features, logits) per batch."""

    def __init__(self, module, image_size: int = 299):
        self.module = module
        try:
            module.eval()
        except NotImplementedError:  # a torch.export module: its train/eval mode was fixed when exported
            pass
        self.image_size = image_size
        schema = getattr(getattr(module, "forward", None), "schema", None)
        self.splits_outputs = schema is not None and any(a.name == "return_features" for a in schema.arguments)

    def __call__(self, batch):
        import torch
        with torch.no_grad():
            logits = self.module(batch).float().flatten(1)
            features = self.module(batch, return_features=True).float().flatten(1) if self.splits_outputs else logits
        return features, logits


def load_feature_net(path: str | Path, image_size: int = 299) -> FeatureNet:
    """The network in `path`: a `torch.export` program (`.pt2`) or a TorchScript archive; errors name the file."""
    import torch
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: feature network file not found")
    if path.suffix == ".pt2":
        try:
            return FeatureNet(torch.export.load(str(path)).module(), image_size)
        except Exception as exc:  # noqa: BLE001  (torch raises many types for a bad archive)
            raise RunError(f"{path}: not a torch.export program ({str(exc).splitlines()[0]})") from None
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001  (torch raises RuntimeError/ValueError for non-TorchScript files)
        raise RunError(f"{path}: not a TorchScript archive ({str(exc).splitlines()[0]}); save the feature "
                       f"network with torch.jit.save, or torch.export.save as a .pt2 file") from None
    return FeatureNet(module, image_size)


def generated_images(folder: str | Path) -> Iterator[tuple[str, Image.Image]]:
    """(path, image) for every generated image of `folder`, in sorted path order: the samples its generate.json
    lists when `imdd-models generate` wrote it (not grid.png, nor files of another run), else every image file
    under it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: generated images folder not found")
    for path in _sample_files(folder):
        try:
            image = Image.open(path)
            image.load()
        except OSError as exc:  # a truncated or mislabelled file: name it rather than a PIL traceback
            raise RunError(f"{path}: cannot read the image ({exc})") from None
        with image:
            yield str(path), image


def _sample_files(folder: Path) -> list[Path]:
    """Every image file under `folder`, except that a folder `generate` wrote (its generate.json) gives only the
    samples it lists (not grid.png, nor samples of an earlier run)."""
    from ..diffusion.samples import RECORD, listed_samples
    listed: dict[Path, set[str]] = {}
    for record in [folder / RECORD, *folder.rglob(f"*/{RECORD}")]:
        names = listed_samples(record.parent)
        if names is None:
            continue
        missing = sorted(n for n in names if not (record.parent / n).is_file())
        if missing:
            raise RunError(f"{record.parent / missing[0]}: listed in generate.json but not there")
        listed[record.parent] = names
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file()
                  and (p.parent not in listed or p.name in listed[p.parent]))


def real_images(data: str, split: str | None, where: str | None = None) -> Iterator[tuple[str, Image.Image]]:
    """(key, image) of the shards' records."""
    for record in iter_records(data, split, where):
        yield record["key"], record["image"]


def _to_batch(images: list[Image.Image], size: int):
    import torch
    arrays = [np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC)) for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()


def extract(images: Iterable[tuple[str, Image.Image]], net: FeatureNet, batch_size: int = 32,
            on_image: Callable[[], None] | None = None):
    """(features, logits) tensors (N, d) of every image."""
    import torch
    feats, logits, batch = [], [], []

    def flush():
        f, lg = net(_to_batch(batch, net.image_size))
        feats.append(f)
        logits.append(lg)
        batch.clear()

    for _name, image in images:
        batch.append(image)
        if on_image:
            on_image()
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if not feats:
        return torch.zeros(0, 0), torch.zeros(0, 0)
    return torch.cat(feats), torch.cat(logits)


def _identity(dim: int):
    import torch

    class Precomputed(torch.nn.Module):
        """torchmetrics' `feature=` module for features already extracted: passes them through."""

        def __init__(self):
            super().__init__()
            self.num_features = dim

        def forward(self, x):
            return x

    return Precomputed()


def _number(value) -> float | None:
    """A finite float, or None (a std over one subset or split is undefined; JSON has no NaN)."""
    value = float(value)
    return value if np.isfinite(value) else None


def metrics_from_features(real, generated, generated_logits, kid_subset_size: int = 1000, kid_subsets: int = 100,
                          is_splits: int = 10, seed: int = 0) -> dict:
    """FID, KID (mean, std) and IS (mean, std) with torchmetrics from (N, d) feature tensors."""
    import torch
    import_torchmetrics()
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance
    n_real, n_gen = len(real), len(generated)
    if n_real < 2 or n_gen < 2:
        raise RunError(f"FID needs at least 2 real and 2 generated images (got {n_real} and {n_gen})")
    with warnings.catch_warnings():  # "will save all extracted features": they are already all in memory
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        warnings.filterwarnings("ignore", message=".*degrees of freedom.*")  # a std over one split: None below
        fid = FrechetInceptionDistance(feature=_identity(real.shape[1]))
        fid.update(real, real=True)
        fid.update(generated, real=False)
        subset = min(kid_subset_size, n_real, n_gen)
        kid = KernelInceptionDistance(feature=_identity(real.shape[1]), subsets=kid_subsets, subset_size=subset)
        kid.update(real, real=True)
        kid.update(generated, real=False)
        inception = InceptionScore(feature=_identity(generated_logits.shape[1]), splits=min(is_splits, n_gen))
        inception.update(generated_logits)
        torch.manual_seed(seed)  # KID subsets and the IS split order are random draws
        kid_mean, kid_std = kid.compute()
        is_mean, is_std = inception.compute()
    return {"fid": _number(fid.compute()), "kid": _number(kid_mean), "kid_std": _number(kid_std),
            "inception_score": _number(is_mean), "inception_score_std": _number(is_std),
            "kid_subset_size": subset, "kid_subsets": kid_subsets, "is_splits": min(is_splits, n_gen)}


def sample_warnings(n_real: int, n_gen: int, dim: int) -> list[str]:
    """Why FID may mean little at these sample counts."""
    warnings = []
    small = min(n_real, n_gen)
    if small <= dim:
        warnings.append(f"{small} samples <= feature dimension {dim}: the covariance is singular, FID is unreliable")
    if small < FID_RELIABLE_SAMPLES:
        warnings.append(f"{n_real} real / {n_gen} generated images: FID is biased upward below ~10k samples "
                        f"(the paper's Magnetic Tile FID is on ~1.3k); compare FIDs only at equal counts, and KID")
    return warnings


def evaluate_generation(real: str, generated: str | Path, feature_weights: str | Path, *, split: str | None = None,
                        where: str | None = None, image_size: int = 299, batch_size: int = 32,
                        kid_subset_size: int = 1000, kid_subsets: int = 100, is_splits: int = 10, seed: int = 0,
                        feature_output: str = "auto", on_image: Callable[[], None] | None = None) -> dict:
    """The `imdd-models evaluate-generation --json` result."""
    if feature_output not in FEATURE_OUTPUTS:
        raise RunError(f"--feature-output {feature_output!r}: choose {', '.join(FEATURE_OUTPUTS)}")
    net = load_feature_net(feature_weights, image_size)
    real_feats, _ = extract(real_images(real, split, where), net, batch_size, on_image)
    gen_feats, gen_logits = extract(generated_images(generated), net, batch_size, on_image)
    if len(real_feats) == 0:
        raise RunError(f"{real}: no real images in split {split!r}")
    if len(gen_feats) == 0:
        raise RunError(f"{generated}: no image files ({', '.join(IMAGE_EXTS)})")
    gen_logits, kind = class_logits(gen_logits, feature_output)
    result = metrics_from_features(real_feats, gen_feats, gen_logits, kid_subset_size, kid_subsets, is_splits, seed)
    result["feature_output"] = kind
    return {"command": "evaluate-generation", "real": str(real), "generated": str(generated), "split": split,
            "where": where, "real_images": len(real_feats), "generated_images": len(gen_feats),
            "feature_weights": str(feature_weights), "feature_dim": int(real_feats.shape[1]),
            "image_size": image_size, **result,
            "warnings": sample_warnings(len(real_feats), len(gen_feats), int(real_feats.shape[1]))}
