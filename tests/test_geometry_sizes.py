"""Every image size from 1 to 5000 in every resize mode gives a geometry PIL accepts (issue 17 item 2:
`box offset can't be negative` on ~330 short sides in crop mode), computed without pixels."""

import math

import numpy as np
import pytest

from imdd_build.geometry import canvas_geometry, source_box, tile_geometries
from imdd_build.normalize import NormalizeOptions, normalize_pixels

SIZES = range(1, 5001)


def _check(g, w, h):
    x0, y0, x1, y1 = g.crop_box
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (w, h, g.crop_box)
    cx0, cy0, cx1, cy1 = g.content_box
    assert 0 <= cx0 < cx1 <= 512 and 0 <= cy0 < cy1 <= 512, (w, h, g.content_box)
    # The box handed to PIL, for the full decode and for a reduced JPEG decode (>= what the canvas needs).
    scale = max(g.scale_x, g.scale_y)
    for im_w, im_h in ((w, h), (max(1, math.ceil(w * min(1.0, scale))), max(1, math.ceil(h * min(1.0, scale))))):
        bx0, by0, bx1, by1 = source_box(g, w, h, im_w, im_h)
        assert 0 <= bx0 <= bx1 <= im_w and 0 <= by0 <= by1 <= im_h, (w, h, im_w, im_h)


@pytest.mark.parametrize("mode", ["letterbox", "stretch", "crop", "tile"])
def test_every_short_side_from_1_to_5000(mode):
    for s in SIZES:
        for w, h in ((s, s), (s + 365, s), (s, 2 * s + 1)):  # square, wide (604x239 at s=239), tall strip
            geometries = tile_geometries(w, h) if mode == "tile" else [canvas_geometry(w, h, mode)]
            for g in geometries:
                _check(g, w, h)


def test_crop_geometry_is_exact_where_it_used_to_be_a_hair_negative():
    g = canvas_geometry(604, 239, "crop")
    assert g.crop_box == (182.5, 0.0, 421.5, 239.0)
    out = normalize_pixels(np.zeros((239, 604, 3), np.uint8), NormalizeOptions(resize_mode="crop"))
    assert out.geometry == g


def test_crop_keeps_a_region_by_moving_the_least_or_gives_up():
    centred = canvas_geometry(1000, 500, "crop")
    assert canvas_geometry(1000, 500, "crop", keep=(300, 10, 700, 20)) == centred  # already inside
    left = canvas_geometry(1000, 500, "crop", keep=(40.5, 10, 90, 20))
    assert left.crop_box == (40.0, 0.0, 540.0, 500.0)
    right = canvas_geometry(1000, 500, "crop", keep=(900, 10, 999.2, 20))
    assert right.crop_box == (500.0, 0.0, 1000.0, 500.0)
    assert canvas_geometry(1000, 500, "crop", keep=(100, 0, 700, 10)) is None  # wider than the square
