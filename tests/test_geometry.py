import numpy as np
import pytest

from imdd_build.geometry import canvas_geometry, mask_to_original, transform_box
from imdd_build.normalize import mask_to_canvas


def test_letterbox_keeps_aspect_and_centres():
    g = canvas_geometry(1600, 256)
    assert g.content_box == (0, 215, 512, 297)
    assert g.scale_x == pytest.approx(512 / 1600) and g.scale_y == pytest.approx(82 / 256)
    assert g.to_canvas(0, 0) == (0.0, 215.0)
    x, y = g.to_original(*g.to_canvas(800, 128))
    assert x == pytest.approx(800) and y == pytest.approx(128)


def test_stretch_and_crop():
    s = canvas_geometry(1000, 500, "stretch")
    assert (s.scale_x, s.scale_y, s.content_box) == (0.512, 1.024, (0, 0, 512, 512))
    c = canvas_geometry(1000, 500, "crop")
    assert c.crop_box == (250.0, 0.0, 750.0, 500.0)
    assert c.to_canvas(250, 0) == pytest.approx((0.0, 0.0))
    assert c.to_canvas(750, 500) == pytest.approx((512.0, 512.0))
    with pytest.raises(ValueError, match="unknown resize mode"):
        canvas_geometry(10, 10, "fit")


def test_transform_box_clips_to_visible_content():
    c = canvas_geometry(1000, 500, "crop")
    assert transform_box(c, "hole", 0, 0, 100, 100) is None  # cropped away entirely
    box = transform_box(c, "hole", 200, 100, 300, 200)
    assert (box.x0, box.x1) == (0.0, pytest.approx(51.2))
    lb = canvas_geometry(100, 50)
    box = transform_box(lb, "scratch", 10, 10, 20, 20)
    assert (box.x0, box.y0, box.x1, box.y1) == (51.2, 179.2, 102.4, 230.4)


@pytest.mark.parametrize("mode", ["letterbox", "stretch", "crop"])
@pytest.mark.parametrize("size", [(96, 64), (1200, 700), (300, 900)])
def test_mask_round_trip_through_geometry(mode, size):
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    original = np.where(((xx - w * 0.5) / (w * 0.2)) ** 2 + ((yy - h * 0.45) / (h * 0.2)) ** 2 <= 1, 255, 0).astype(np.uint8)
    g = canvas_geometry(w, h, mode)
    canvas = mask_to_canvas(original, g)
    assert canvas.shape == (512, 512) and set(np.unique(canvas)) <= {0, 255}
    back = mask_to_original(canvas, g, w, h)
    x0, y0, x1, y1 = (round(v) for v in g.crop_box)
    a, b = original[y0:y1, x0:x1] > 0, back[y0:y1, x0:x1] > 0
    assert (a & b).sum() / (a | b).sum() >= 0.98
