"""MVTec AD (Bergmann et al., CVPR 2019 / IJCV 2021). CC BY-NC-SA 4.0.

Layout: `<category>/{train,test}/<class>/NNN.png`, masks `<category>/ground_truth/<class>/NNN_mask.png`;
`good` is normal; grid/screw/zipper are single-channel gray. License and citation: sources.yaml.
"""

from __future__ import annotations

from ..sourcekit.mvtec_tree import MVTecTreeAdapter


class MVTecAdapter(MVTecTreeAdapter):
    id = "mvtec"
    expected = "<category>/{train,test}/<class>/NNN.png with ground_truth/<class>/NNN_mask.png"
    half_max = False  # masks are 0/255 as shipped
    flag_missing = False
