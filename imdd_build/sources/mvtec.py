"""MVTec AD (Bergmann et al., CVPR 2019 / IJCV 2021). CC BY-NC-SA 4.0.

Layout: `<category>/{train,test}/<class>/NNN.png`, masks `<category>/ground_truth/<class>/NNN_mask.png`;
`good` is normal; grid/screw/zipper are single-channel gray. License and citation: sources.yaml.
"""

from __future__ import annotations

from collections.abc import Iterator

from .base import RawSample, SourceAdapter
from .mvtec_tree import find_categories, iter_mvtec_tree
from .options import CategoryOptions


class MVTecAdapter(SourceAdapter):
    id = "mvtec"
    expected = "<category>/{train,test}/<class>/NNN.png with ground_truth/<class>/NNN_mask.png"
    Options = CategoryOptions
    normal_names = {"good"}

    def samples(self) -> Iterator[RawSample]:
        self.base, categories = find_categories(self.root, self.options.get("categories"))
        yield from iter_mvtec_tree(self.base, categories, self.normal_names)
