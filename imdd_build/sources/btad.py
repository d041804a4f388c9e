"""BTAD, the beanTech Anomaly Detection dataset (Mishra et al., VT-ADL, ISIE 2021). License: sources.yaml.

Native layout (`btad.zip` unpacks to `BTech_Dataset_transformed/`; the adapter accepts that folder,
the folder above it, or one product folder):

    01/train/ok/0000.bmp            normal training images
    01/test/ok/0000.bmp             normal test images
    01/test/ko/0000.bmp             defective test images
    01/ground_truth/ko/0000.png     mask of test/ko/0000.*, SAME stem, no `_mask` suffix
    02/...  03/...

Quirks handled:
* normal is `ok`, defective is `ko` (kept as the source labels);
* image and mask extensions differ per product (`.bmp` or `.png`, any case); a mask is paired with
  its image by stem only, whatever its extension, and a stray `_mask` suffix is tolerated;
* masks may be 0/255, 0/1 or anti-aliased: each mask is binarised at half its own maximum;
* a `ko` image without a mask stays a defective record with `attributes.mask = "missing"`;
* the products are anonymous: product names are `product_01` ... (`--category` takes `01` or
  `product_01`).
"""

from __future__ import annotations

from ..sourcekit.mvtec_tree import MVTecTreeAdapter


class BTADAdapter(MVTecTreeAdapter):
    id = "btad"
    expected = "<product>/{train,test}/{ok,ko}/ images with ground_truth/ko/ masks (products 01, 02, 03)"
    normal_names = frozenset({"ok", "good"})

    def product_name(self, folder_name: str) -> str:
        return f"product_{folder_name}" if folder_name.isdigit() else folder_name
