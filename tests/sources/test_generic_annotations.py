"""The generic adapters for annotation formats: coco, voc and yolo."""

import json

import numpy as np
import pytest
from PIL import Image

from fixtures import save
from generic_helpers import SIZE, box_tuple, coco_runs, canvas_box, img, ingest, iou, original_mask, quarantine, record
from imdd_build.sources.coco import decode_rle_string, encode_rle_string, rle_to_mask
from imdd_build.sources.yolo import LabelError, parse_label_file


# -- coco ------------------------------------------------------------------------------------------
# Reference vector written by pycocotools 2.0.11 `mask.encode` for a 40x48 mask (see the test).
PYCOCOTOOLS_RLE = "Y3=k000000000000d02ZO0000000000000000000000000000000000000[<i0dK"


def reference_mask():
    m = np.zeros((40, 48), bool)
    m[5:20, 10:30] = True
    m[25:38, 2:9] = True
    m[0:40, 40:41] = True
    return m


def test_coco_compressed_rle_matches_pycocotools():
    assert (rle_to_mask(PYCOCOTOOLS_RLE, 40, 48) == reference_mask()).all()
    counts = decode_rle_string(PYCOCOTOOLS_RLE)
    assert sum(counts) == 40 * 48 and encode_rle_string(counts) == PYCOCOTOOLS_RLE
    runs = coco_runs(reference_mask())
    assert counts == runs


def write_coco(root):
    cats = [{"id": 1, "name": "scratches"}, {"id": 2, "name": "hole"}, {"id": 3, "name": "foo bar"},
            {"id": 4, "name": "crack"}]
    images = [{"id": i, "file_name": name, "width": 48, "height": 40}
              for i, name in enumerate(["p1.png", "p2.png", "p3.png", "p4.png", "missing.png", "p6.png"], 1)]
    for i, im in enumerate(images):
        if im["file_name"] != "missing.png":
            img(root / "train2017" / im["file_name"], i, size=(48, 40))
    unc = np.zeros((40, 48), bool)
    unc[10:30, 20:40] = True
    runs = coco_runs(unc)
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [4, 6, 20, 10],
         "segmentation": [[4, 6, 24, 6, 24, 16, 4, 16]]},
        {"id": 2, "image_id": 2, "category_id": 2, "iscrowd": 1, "bbox": [20, 10, 20, 20],
         "segmentation": {"size": [40, 48], "counts": runs}},
        {"id": 3, "image_id": 3, "category_id": 3, "iscrowd": 0, "bbox": [2, 0, 39, 40],
         "segmentation": {"size": [40, 48], "counts": PYCOCOTOOLS_RLE}},
        {"id": 4, "image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1]},  # unknown image
        {"id": 5, "image_id": 6, "category_id": 42, "bbox": [0, 0, 5, 5]},  # unknown category
    ]
    (root / "annotations").mkdir(parents=True)
    (root / "annotations/instances_train2017.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))
    img(root / "val2017/v1.jpg", 20, size=(48, 40))
    (root / "annotations/instances_val2017.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "v1.jpg", "width": 48, "height": 40}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 4, "bbox": [5.5, 4, 10, 12], "iscrowd": 0}],
        "categories": cats}))
    (root / "annotations/captions_train2017.json").write_text(json.dumps({"images": [], "annotations": []}))


def test_coco_polygons_rle_boxes_splits_and_quarantine(tmp_path, cli, workspace):
    root = tmp_path / "coco"
    write_coco(root)
    out = ingest(cli, "coco", root)
    assert out["records"] == 5 and out["by_split"] == {"train": 4, "validation": 1}
    assert out["by_label"] == {"defective": 4, "normal": 1}
    assert out["by_defect_type"] == {"crack": 1, "foo_bar": 1, "hole": 1, "scratch": 1}
    reasons = quarantine(out)
    assert set(reasons) == {"train2017/missing.png", "train2017/p6.png", "annotations/instances_train2017.json"}
    assert "not found" in reasons["train2017/missing.png"]
    assert "unknown category_id 42" in reasons["train2017/p6.png"]
    assert "image_id 99" in reasons["annotations/instances_train2017.json"]

    p1 = record(workspace, "train2017/p1.png")
    assert p1.defect_types == ["scratch"] and p1.source_labels == ["scratches"] and p1.source_split == "train2017"
    assert box_tuple(p1.boxes[0]) == canvas_box(p1, 4, 6, 24, 16) and p1.boxes[0].label == "scratch"
    poly = np.zeros((40, 48), bool)
    poly[6:17, 4:25] = True
    assert iou(original_mask(workspace, p1), poly) > 0.9
    p2 = record(workspace, "train2017/p2.png")
    expected = np.zeros((40, 48), bool)
    expected[10:30, 20:40] = True
    assert iou(original_mask(workspace, p2), expected) > 0.97 and p2.source_attributes["crowd_regions"] == 1
    p3 = record(workspace, "train2017/p3.png")
    assert p3.defect_types == ["foo_bar"] and iou(original_mask(workspace, p3), reference_mask()) > 0.95
    assert record(workspace, "train2017/p4.png").label == "normal"
    v1 = record(workspace, "val2017/v1.jpg")
    assert v1.split == "validation" and v1.mask is None and v1.defect_types == ["crack"]
    assert box_tuple(v1.boxes[0]) == canvas_box(v1, 5.5, 4, 15.5, 16)
    # crowd regions can be dropped
    out = ingest(cli, "coco", root, "--opt", "crowd=ignore")
    assert record(workspace, "train2017/p2.png").label == "normal"


def test_coco_roboflow_layout_and_explicit_files(tmp_path, cli, workspace):
    root = tmp_path / "rf"
    for split in ("train", "valid"):
        img(root / split / "a.jpg", 1, size=(48, 40))
        (root / split / "_annotations.coco.json").write_text(json.dumps({
            "images": [{"id": 0, "file_name": "a.jpg"}],
            "annotations": [{"id": 0, "image_id": 0, "category_id": 0, "bbox": [1, 1, 5, 5],
                             "segmentation": []}],
            "categories": [{"id": 0, "name": "Scratch"}]}))
    out = ingest(cli, "coco", root)
    assert out["by_split"] == {"train": 1, "validation": 1} and out["by_defect_type"] == {"scratch": 2}
    a = record(workspace, "train/a.jpg")
    assert a.mask is None and a.attributes.basis == "boxes"
    # one JSON with no split in its name: seeded splits; images folder given explicitly
    other = tmp_path / "cvat"
    img(other / "pics/x.png", 3)
    (other / "export").mkdir(parents=True)
    (other / "export/instances_default.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "x.png"}], "annotations": [], "categories": []}))
    out = ingest(cli, "coco", other, "--opt", "annotations=export/instances_default.json", "--opt", "images=pics")
    assert out["records"] == 3 and record(workspace, "pics/x.png").split_origin == "seeded"
    out = ingest(cli, "coco", tmp_path / "cvat" / "pics", expect=2)
    assert "no COCO instances JSON" in out["error"]


# -- voc -------------------------------------------------------------------------------------------
def voc_xml(filename, objects, size=SIZE):
    objs = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
                   f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
                   for n, b, d in objects)
    return (f"<annotation><filename>{filename}</filename><size><width>{size[0]}</width>"
            f"<height>{size[1]}</height><depth>3</depth></size>{objs}</annotation>")


def test_voc_boxes_imagesets_segmentation_and_quarantine(tmp_path, cli, workspace):
    root = tmp_path / "vocroot"
    voc = root / "VOCdevkit/VOC2007"
    ann, jpg, main = voc / "Annotations", voc / "JPEGImages", voc / "ImageSets/Main"
    for d in (ann, main):
        d.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(["000001.jpg", "000002.jpg", "000003.JPG", "000004.jpg", "000006.jpg",
                              "000007.jpg", "000008.jpg"]):
        img(jpg / name, i)
    (ann / "000001.xml").write_text(voc_xml("000001.jpg", [("scratches", (10, 5, 29, 20), 0),
                                                           ("Mouse_bite", (40, 30, 50, 40), 1)]))
    (ann / "000002.xml").write_text(voc_xml("000002.jpg", []))  # no objects: normal
    (ann / "000004.xml").write_text(voc_xml("000004.jpg", [("good", (0, 0, 10, 10), 0)]))
    (ann / "000005.xml").write_text(voc_xml("000005.jpg", [("hole", (0, 0, 10, 10), 0)]))  # no image
    (ann / "000006.xml").write_text("<annotation><object>")  # broken XML
    (ann / "000007.xml").write_text(voc_xml("000007.jpg", [("hole", (1, 1, 10, 10), 0)]))
    (ann / "000008.xml").write_text(voc_xml("000008.jpg", [("dent", (1, 1, 10, 10), 0)]))
    (main / "train.txt").write_text("000001\n000002\n000007\n")
    (main / "val.txt").write_text("000003\n000007\n000099\n")
    (main / "test.txt").write_text("000004\n")
    (main / "scratches_train.txt").write_text("000001  1\n")  # per-class lists are ignored
    seg = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    seg[5:21, 10:30] = 3
    seg[4, 9:31] = 255  # VOC "void" border: not a defect
    pal = Image.fromarray(seg, "P")
    pal.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [224, 224, 192] * 252)
    save(pal, voc / "SegmentationClass/000001.png")

    out = ingest(cli, "voc", root)
    assert out["records"] == 5
    assert out["by_label"] == {"defective": 2, "normal": 3}
    assert out["by_defect_type"] == {"dent": 1, "mouse_bite": 1, "scratch": 1}
    reasons = quarantine(out)
    pre = "VOCdevkit/VOC2007/"
    assert set(reasons) == {pre + "Annotations/000005.xml", pre + "JPEGImages/000006.jpg",
                            pre + "JPEGImages/000007.jpg", pre + "ImageSets/Main/val.txt:3"}
    assert "not readable VOC XML" in reasons[pre + "JPEGImages/000006.jpg"]
    assert "more than one" in reasons[pre + "JPEGImages/000007.jpg"]
    assert "'000099' not found" in reasons[pre + "ImageSets/Main/val.txt:3"]
    r1 = record(workspace, pre + "JPEGImages/000001.jpg")
    assert r1.split == "train" and r1.source_split == "train" and r1.source_labels == ["scratches", "Mouse_bite"]
    assert r1.defect_types == ["scratch", "mouse_bite"] and r1.source_attributes == {"difficult": 1}
    assert box_tuple(r1.boxes[0]) == canvas_box(r1, 10, 5, 30, 21) and r1.boxes[1].label == "mouse_bite"
    expected = np.zeros((SIZE[1], SIZE[0]), bool)
    expected[5:21, 10:30] = True
    assert iou(original_mask(workspace, r1), expected) > 0.95
    assert record(workspace, pre + "JPEGImages/000002.jpg").label == "normal"
    r3 = record(workspace, pre + "JPEGImages/000003.JPG")
    assert r3.label == "normal" and r3.split == "validation"
    r4 = record(workspace, pre + "JPEGImages/000004.jpg")
    assert r4.label == "normal" and r4.split == "test" and r4.source_labels == ["good"] and not r4.boxes
    r8 = record(workspace, pre + "JPEGImages/000008.jpg")
    assert r8.split_origin == "seeded" and r8.source_split == ""


# -- yolo ------------------------------------------------------------------------------------------
def test_yolo_boxes_polygons_names_and_quarantine(tmp_path, cli, workspace):
    root = tmp_path / "yolo"
    (root / "data.yaml").parent.mkdir(parents=True)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\n"
                                    "names:\n  0: scratches\n  1: good\n  2: stain_x\n")
    files = {"a.jpg": "0 0.5 0.5 0.25 0.5\n", "b.png": "2 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5\n",
             "c.png": "", "d.png": None, "e.png": "1 0.5 0.5 0.2 0.2\n", "f.png": "0 0.5 0.5\n",
             "g.png": "7 0.5 0.5 0.1 0.1\n", "h.PNG": "0 0.5 0.5 1.5 0.2\n"}
    for i, (name, text) in enumerate(files.items()):
        img(root / "images/train" / name, i)
        if text is not None:
            (root / "labels/train").mkdir(parents=True, exist_ok=True)
            (root / "labels/train" / name).with_suffix(".txt").write_text(text)
    (root / "labels/train/orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    img(root / "images/val/v.png", 20)
    (root / "labels/val").mkdir(parents=True)
    (root / "labels/val/v.txt").write_text("0 0.25 0.25 0.5 0.5\n2 0.1 0.1 0.9 0.1 0.9 0.9\n")
    img(root / "images/misc/m.png", 21)

    out = ingest(cli, "yolo", root)
    assert out["records"] == 6 and out["by_split"] == {"train": 5, "validation": 1}
    assert out["by_label"] == {"defective": 3, "normal": 3}
    assert out["by_defect_type"] == {"scratch": 2, "stain_x": 2}
    reasons = quarantine(out)
    assert set(reasons) == {"images/misc/", "images/train/f.png", "images/train/g.png", "images/train/h.PNG",
                            "labels/train/orphan.txt"}
    assert "labels/train/f.txt line 1: 3 values" in reasons["images/train/f.png"]
    assert "class id 7 has no name" in reasons["images/train/g.png"]
    assert "not normalized" in reasons["images/train/h.PNG"]
    a = record(workspace, "images/train/a.jpg")
    assert a.source_labels == ["scratches"] and a.mask is None
    assert box_tuple(a.boxes[0]) == canvas_box(a, 24, 12, 40, 36)
    b = record(workspace, "images/train/b.png")
    expected = np.zeros((SIZE[1], SIZE[0]), bool)
    expected[5:24, 6:32] = True  # 0.1..0.5 of 64x48
    assert b.defect_types == ["stain_x"] and iou(original_mask(workspace, b), expected) > 0.85
    assert box_tuple(b.boxes[0]) == canvas_box(b, 6.4, 4.8, 32, 24)
    for name in ("c.png", "d.png", "e.png"):
        assert record(workspace, f"images/train/{name}").label == "normal"
    v = record(workspace, "images/val/v.png")
    assert v.mask is None and len(v.boxes) == 2  # box + polygon: boxes only


def test_yolo_roboflow_layout_classes_txt_and_flat_layout(tmp_path, cli, workspace):
    root = tmp_path / "rf"
    (root).mkdir()
    (root / "classes.txt").write_text("Crack\nHole\n")
    img(root / "train/images/a.jpg", 1)
    (root / "train/labels").mkdir(parents=True)
    (root / "train/labels/a.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    img(root / "valid/images/b.jpg", 2)
    out = ingest(cli, "yolo", root)
    assert out["by_split"] == {"train": 1, "validation": 1} and out["by_defect_type"] == {"hole": 1}
    flat = tmp_path / "flat"
    img(flat / "images/x.png", 3)
    (flat / "labels").mkdir(parents=True)
    (flat / "labels/x.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    out = ingest(cli, "yolo", flat, "--opt", "names=[scratches]")
    x = record(workspace, "images/x.png")
    assert x.split_origin == "seeded" and x.defect_types == ["scratch"]


def test_yolo_label_parser():
    assert parse_label_file("0 0.5 0.5 0.1 0.1\n\n1 0 0 1 0 1 1\n") == [(0, [0.5, 0.5, 0.1, 0.1]),
                                                                       (1, [0, 0, 1, 0, 1, 1])]
    with pytest.raises(LabelError, match="line 2"):
        parse_label_file("0 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.1 0.1 0.9\n")


