"""CrackForest / CFD (Shi et al., "Automatic Road Crack Detection Using Random Structured Forests",
IEEE T-ITS 17(12), 2016). The repository README (section "2.License."): "The dataset is made
available for non-commercial research purposes only."

Native layout (repository `cuilimeng/CrackForest-dataset`): `image/001.jpg` ... `image/155.jpg`
(480x320 RGB road photos) and, for 118 of them, `groundTruth/001.mat`: a MATLAB file holding a
BSDS500-style `groundTruth` struct with a `Segmentation` label map and a `Boundaries` edge map; `seg/`
holds the same annotation as BSDS `.seg` run-length text files. The other 37 images have no ground
truth and are quarantined, so a complete download lists 155 images and yields 118 samples.

Which labels are crack (the reasoning, since nothing official states it). The README has only the
license and history (the paper could not be consulted here). The annotation follows
the BSDS500 ground-truth format (`groundTruth.Segmentation` / `.Boundaries`, BSDS `.seg` files), and
in BSDS a `Segmentation` value is a *segment id* -- a region the annotator closed off -- not a class.
So `Segmentation > 1` is not "crack": it is "every segment but the first". What the real 118 files
hold (inspected for issue #20 with the photos overlaid; the files themselves are not in this repo):
1 is the pavement around the cracks; 2 the cracks (up to ~10 px inscribed radius); 3, in 22 files,
solid blocks of pavement enclosed by crack loops (inscribed radius up to ~39 px: image 101 gets
61,622 mask pixels at 512 from `> 1` where its cracks are ~10,212); 4, in 5 files, short thin crack
pieces (~3 px) closed off as a segment of their own. The label-3 blocks are intact pavement in the
photos and the label-4 pieces follow visible cracks, so crack = labels 2 and 4, pavement = 1 and 3.
A map holding any other label fails that sample (a new kind of segment must be looked at, not
guessed); a 0/1 map (converted copies) is read as background/crack.

Quirks handled:
* the `.mat` mask is decoded in the worker (`scipy.io.loadmat`) by the rule above; `Boundaries` is
  the fallback when there is no `Segmentation`; a `.mat` without either fails that sample only;
* the PNG variant: masks as images of the same stem in a `seg/`, `mask(s)/`, `gt/`,
  `groundTruthPngImg/` or `label(s)/` folder (any non-zero pixel is crack; above 127 for JPEG masks);
  the `.mat` is preferred when both exist; the repository's `seg/*.seg` text files are ignored;
* an image without any mask is quarantined; every CFD image shows cracks (label defective);
* the root may be the folder holding `image/` or its parent (a `CrackForest-dataset-master/` checkout);
  paths are relative to the folder holding `image/`;
* no official split: a seeded split by image stem.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..normalize import SampleError
from ..record import Quarantined
from ..store import sha256_file
from ..sourcekit.base import RawSample, RootError, SourceAdapter, sorted_dirs, sorted_images
from ..sourcekit.masks import MaskFiles, MaskSource
from ..sourcekit.search import shallowest

CRACK = "crack"
IMAGE_DIRS = ("image", "images", "img", "imgs")
MAT_DIRS = ("groundtruth",)
PNG_DIRS = ("seg", "mask", "masks", "gt", "groundtruthpngimg", "groundtruth_png", "label", "labels")
#: `Segmentation` segment ids (see the module docstring): 2 and 4 are crack, 1 and 3 pavement.
CRACK_LABELS = (2, 4)
PAVEMENT_LABELS = (1, 3)
DECODER = "cfd-crack-labels-2-4"


def _field(obj, name: str):
    """A field of a loadmat struct, whatever the loadmat flags (mat_struct or record array)."""
    if hasattr(obj, name):
        return getattr(obj, name)
    if isinstance(obj, np.ndarray) and obj.dtype.names and name in obj.dtype.names:
        value = obj[name]
        while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
            value = value.item()
        return value
    return None


def decode_cfd_mat(path: Path) -> np.ndarray:
    """The crack mask (bool, h x w) of a CFD `groundTruth/*.mat` file."""
    from scipy.io import loadmat

    try:
        data = loadmat(str(path), squeeze_me=True, struct_as_record=False)
    except Exception as exc:  # scipy raises several kinds for corrupt files
        raise SampleError(f"not a readable MATLAB file: {exc}") from None
    gt = data.get("groundTruth", data.get("groundtruth"))
    if gt is None:
        raise SampleError(f"no 'groundTruth' variable (found {sorted(k for k in data if not k.startswith('__'))})")
    if isinstance(gt, np.ndarray) and gt.dtype == object:
        gt = gt.flat[0]  # several annotators: the first
    seg = _field(gt, "Segmentation")
    if seg is not None:
        seg = np.asarray(seg)
        if seg.ndim != 2 or seg.size == 0:
            raise SampleError(f"Segmentation has shape {seg.shape}")
        return segmentation_cracks(seg)
    bounds = _field(gt, "Boundaries")
    if bounds is not None and np.asarray(bounds).ndim == 2:
        return np.asarray(bounds) > 0
    raise SampleError("groundTruth has neither Segmentation nor Boundaries")


def segmentation_cracks(seg: np.ndarray) -> np.ndarray:
    """Crack pixels of a CFD `Segmentation` map: labels 2 and 4 (1 and 3 are pavement); 0/1 maps as is."""
    values = set(np.unique(seg).tolist())
    if values <= {0, 1}:
        return seg == 1
    unknown = sorted(values - set(CRACK_LABELS) - set(PAVEMENT_LABELS))
    if unknown:
        raise SampleError(f"Segmentation holds label(s) {', '.join(map(str, unknown))}; CFD uses 1 pavement, "
                          "2 crack, 3 pavement enclosed by cracks, 4 crack")
    return np.isin(seg, CRACK_LABELS)


@dataclass
class CfdMatMask(MaskSource):
    """The crack pixels of one CFD `.mat` ground-truth file (root-relative path)."""

    path: str

    def load(self, base: Path, size: tuple[int, int], max_pixels: int) -> np.ndarray:
        try:
            mask = decode_cfd_mat(base / self.path)
        except SampleError as exc:
            raise SampleError(f"mask {self.path}: {exc}") from None
        if mask.shape != (size[1], size[0]):
            raise SampleError(f"mask {self.path}: mask size {mask.shape[1]}x{mask.shape[0]} does not match "
                              f"image size {size[0]}x{size[1]}")
        return mask.astype(np.uint8) * 255

    def fingerprint(self, base: Path) -> str:
        try:  # the decoding rule is part of the mask: a catalog built with `> 1` is rebuilt, not skipped
            return f"{sha256_file(base / self.path)}:{DECODER}"
        except OSError as exc:
            raise SampleError(f"cannot read mask file: {exc.strerror or exc}") from exc

    def describe(self) -> str | None:
        return self.path


def _child(parent: Path, names: tuple[str, ...]) -> Path | None:
    return next((d for d in sorted_dirs(parent) if d.name.lower() in names), None)


class CrackForestAdapter(SourceAdapter):
    id = "crackforest"
    expected = "image/*.jpg with groundTruth/<stem>.mat (or a same-stem PNG mask in seg/, gt/ or masks/)"
    labels = (CRACK,)

    def locate(self) -> Path:
        """Found at construction, so a wrong root fails at once."""
        return self._dataset_dir()

    def _dataset_dir(self) -> Path:
        found = shallowest(self.root, lambda d: _child(d, IMAGE_DIRS) is not None)
        if len(found) == 1:  # the root, else exactly one folder below it
            return found[0][0]
        raise RootError(f"{self.root}: no image/ folder found (expected image/*.jpg and groundTruth/*.mat)")

    def samples(self) -> Iterator[RawSample | Quarantined]:
        data = self.base
        mats: dict[str, Path] = {}
        mat_dir = _child(data, MAT_DIRS)
        if mat_dir is not None:
            mats = {p.stem.lower(): p for p in sorted(mat_dir.iterdir())
                    if p.is_file() and p.suffix.lower() == ".mat" and not p.name.startswith(".")}
        pngs: dict[str, Path] = {}
        for folder in (d for d in sorted_dirs(data) if d.name.lower() in PNG_DIRS + MAT_DIRS):
            for p in sorted_images(folder):
                pngs.setdefault(p.stem.lower(), p)
        for image in sorted_images(_child(data, IMAGE_DIRS)):
            rel = image.relative_to(data).as_posix()
            stem = image.stem.lower()
            if stem in mats:
                mask: MaskSource = CfdMatMask(mats[stem].relative_to(data).as_posix())
            elif stem in pngs:
                png = pngs[stem]
                jpeg = png.suffix.lower() in (".jpg", ".jpeg")
                mask = MaskFiles([png.relative_to(data).as_posix()], threshold=127 if jpeg else 0)
            else:
                yield Quarantined(source=self.source_id, path=rel,
                                  reason=f"no mask for {image.stem} (groundTruth/{image.stem}.mat or a PNG mask)")
                continue
            yield RawSample(
                rel_path=rel, product="road", source_split="", label="defective", source_labels=[CRACK],
                mask=mask, split=self.seeded(stem), split_origin="seeded",
            )
