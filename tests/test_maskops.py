import numpy as np

from imdd_build.maskops import binarize, box_attributes, mask_attributes, mask_to_boxes
from imdd_build.record import Box

FULL = (0, 0, 512, 512)


def test_binarize_any_nonzero():
    assert binarize(np.array([[0, 1, 2, 255]], np.uint8)).tolist() == [[0, 255, 255, 255]]


def test_thin_line_reads_as_elongated_and_located():
    m = np.zeros((512, 512), np.uint8)
    m[40:44, 20:150] = 255  # thin horizontal scratch in the upper left
    a = mask_attributes(m, FULL)
    assert a.location == "upper left" and a.shape == "elongated" and a.regions == 1
    assert a.elongation > 10 and a.severity == "minor"


def test_blob_in_center_is_compact_and_area_is_relative_to_content():
    m = np.zeros((512, 512), np.uint8)
    m[236:276, 236:276] = 255
    a = mask_attributes(m, (0, 128, 512, 384))  # letterboxed content: half the canvas
    assert a.location == "center" and a.shape == "compact"
    assert a.area_fraction == round(1600 / (512 * 256), 5)


def test_scattered_regions_and_boxes():
    m = np.zeros((512, 512), np.uint8)
    for i in range(5):
        m[100 * i + 10: 100 * i + 20, 50:60] = 255
    assert mask_attributes(m, FULL).shape == "scattered"
    boxes = mask_to_boxes(m, "spot")
    assert len(boxes) == 5 and boxes[0] == Box(label="spot", x0=50, y0=10, x1=60, y1=20)


def test_empty_mask_and_box_attributes():
    assert mask_attributes(np.zeros((512, 512), np.uint8), FULL).location is None
    a = box_attributes([Box(label="x", x0=400, y0=400, x1=500, y1=420)], FULL)
    assert a.location == "lower right" and a.basis == "boxes" and a.shape == "elongated"
