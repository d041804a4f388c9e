"""MVTec 3D-AD, RGB part (Bergmann et al., VISAPP 2022). License: sources.yaml.

Native layout (the archive's top folder `mvtec_3d_anomaly_detection/` may be the root or wrap it):

    bagel/train/good/rgb/000.png         (+ xyz/000.tiff: ignored, 3-channel float point clouds)
    bagel/validation/good/rgb/000.png
    bagel/test/<good|defect>/rgb/000.png
    bagel/test/<good|defect>/gt/000.png  mask, SAME file name as the rgb image, 0/255
    bagel/calibration/...                ignored (not a split)

Quirks handled: images only from `rgb/` (never `xyz/` TIFFs or `gt/`); `validation` maps to our
validation split; `good` test images ship all-zero gt masks, which are not attached (normal records
carry no mask); masks are binarised at half their maximum; a defect image without a gt file keeps
`attributes.mask = "missing"`.
"""

from __future__ import annotations

from pathlib import Path

from ..sourcekit.mvtec_tree import MVTecTreeAdapter, mask_index
from ..sourcekit.base import sorted_images


class MVTec3DAdapter(MVTecTreeAdapter):
    id = "mvtec3d"
    expected = "<category>/{train,validation,test}/<class>/rgb/NNN.png with gt/NNN.png"

    def class_images(self, class_dir: Path) -> list[Path]:
        rgb = class_dir / "rgb"
        return sorted_images(rgb) if rgb.is_dir() else sorted_images(class_dir)

    def class_masks(self, category: Path, class_dir: Path) -> dict[str, Path]:
        return mask_index([class_dir / "gt"])
