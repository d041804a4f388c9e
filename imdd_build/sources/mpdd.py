"""MPDD, Metal Parts Defect Detection (Jezek et al., ICUMT 2021). License: sources.yaml.

MVTec-AD layout: `<category>/train/good/*.png`, `<category>/test/<good|defect>/*.png`, masks
`<category>/ground_truth/<defect>/<stem>_mask.png` (a mask without the `_mask` suffix is accepted
too). Categories: bracket_black, bracket_brown, bracket_white, connector, metal_plate, tubes.
Defect folder names are taken as data (the known ones are mapped in taxonomy.yaml); `good` is
normal. Masks are binarised at half their maximum (0/255 or 0/1). A defect image without a mask
stays a defective record with `attributes.mask = "missing"`. The root may be the dataset root, a
folder wrapping it, or one category folder.
"""

from __future__ import annotations

from ..sourcekit.mvtec_tree import MVTecTreeAdapter


class MPDDAdapter(MVTecTreeAdapter):
    id = "mpdd"
    expected = "<category>/{train,test}/<class>/*.png with ground_truth/<defect>/*_mask.png"
