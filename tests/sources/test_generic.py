"""The generic adapters for users' own data: folder, coco, voc, yolo, mvtec_like, csv."""

import json

import numpy as np
import pytest
from PIL import Image

from fixtures import blob_mask, noise_image, save
from imdd_build.geometry import mask_to_original
from imdd_build.record import make_key
from imdd_build.sources.coco import decode_rle_string, encode_rle_string, rle_to_mask
from imdd_build.sources.csv_manifest import parse_boxes
from imdd_build.sources.yolo import parse_label_file, LabelError
from imdd_build.workspace import Workspace

GENERIC = ("--license", "CC-BY-4.0", "--domain", "pcb", "--source-id", "myline", "--workers", "1")
SIZE = (64, 48)


def ingest(cli, adapter, root, *extra, expect=0):
    return cli("ingest", adapter, "--root", str(root), *GENERIC, *extra, expect=expect)


def img(path, seed=0, size=SIZE, mode="RGB"):
    return save(noise_image(size, mode, seed=seed), path)


def record(workspace, rel):
    with Workspace(workspace).catalog() as catalog:
        rec = catalog.get(make_key("myline", rel))
    assert rec is not None, rel
    return rec


def original_mask(workspace, rec) -> np.ndarray:
    canvas = np.asarray(Image.open(Workspace(workspace).store().path(rec.mask)))
    return mask_to_original(canvas, rec.geometry, rec.orig_width, rec.orig_height) > 0


def iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def canvas_box(rec, x0, y0, x1, y1):
    ax, ay = rec.geometry.to_canvas(x0, y0)
    bx, by = rec.geometry.to_canvas(x1, y1)
    return pytest.approx((ax, ay, bx, by), abs=0.02)


def box_tuple(box):
    return (box.x0, box.y0, box.x1, box.y1)


def quarantine(out):
    return {q["path"]: q["reason"] for q in out["quarantine"]}


# -- folder ----------------------------------------------------------------------------------------
def write_folder_with_splits(root):
    img(root / "train/good/a.png", 1)
    img(root / "train/good/b.jpg", 2)
    img(root / "train/good/.hidden.png", 3)
    img(root / "train/scratches/c.png", 4)
    save(blob_mask(SIZE, (10, 10, 30, 30)), root / "masks/train/scratches/c_mask.png")
    img(root / "train/scratches/lot7/d.PNG", 5)  # nested folder, upper-case extension
    save(blob_mask(SIZE, (30, 5, 60, 20)).convert("RGB"), root / "masks/scratches/lot7/d_gt.JPG")  # JPEG mask
    img(root / "train/weird_blob/e.png", 6)  # no mask: class only; unmapped label
    img(root / "test/OK/f.bmp", 7)
    img(root / "test/dent/g.png", 8)
    save(blob_mask(SIZE, (5, 5, 20, 40)), root / "test/dent/g_mask.png")  # mask next to its image
    img(root / "Val/Pass/h.png", 9)
    img(root / "notes/x.png", 10)  # not a split folder next to split folders
    img(root / "stray.png", 11)  # outside any class folder
    img(root / "__MACOSX/train/good/._a.png", 12)
    (root / "train/good/readme.txt").write_text("not an image")


def test_folder_split_level_masks_and_quarantine(tmp_path, cli, workspace):
    root = tmp_path / "folder"
    write_folder_with_splits(root)
    out = ingest(cli, "folder", root)
    assert out["source"] == "myline" and out["records"] == 8
    assert out["by_split"] == {"test": 2, "train": 5, "validation": 1}
    assert out["by_label"] == {"defective": 4, "normal": 4}
    assert out["by_defect_type"] == {"dent": 1, "scratch": 2, "weird_blob": 1}
    reasons = quarantine(out)
    assert set(reasons) == {"notes/", "stray.png"}
    assert "not a split" in reasons["notes/"] and "outside any class folder" in reasons["stray.png"]

    c = record(workspace, "train/scratches/c.png")
    assert c.source_labels == ["scratches"] and c.defect_types == ["scratch"] and c.split_origin == "official"
    assert c.domain == "pcb" and c.license == "CC-BY-4.0" and c.source == "myline"
    assert c.mask_source_path == "masks/train/scratches/c_mask.png" and c.attributes.basis == "mask"
    assert iou(original_mask(workspace, c), np.asarray(blob_mask(SIZE, (10, 10, 30, 30))) > 0) > 0.95
    d = record(workspace, "train/scratches/lot7/d.PNG")
    assert d.mask_source_path == "masks/scratches/lot7/d_gt.JPG"
    assert iou(original_mask(workspace, d), np.asarray(blob_mask(SIZE, (30, 5, 60, 20))) > 0) > 0.9
    g = record(workspace, "test/dent/g.png")
    assert g.mask_source_path == "test/dent/g_mask.png" and g.split == "test"
    e = record(workspace, "train/weird_blob/e.png")
    assert e.mask is None and e.defect_types == ["weird_blob"] and e.defect_labels[0].type is None
    f = record(workspace, "test/OK/f.bmp")
    assert f.label == "normal" and f.source_labels == ["OK"] and f.defect_types == []
    h = record(workspace, "Val/Pass/h.png")
    assert h.label == "normal" and h.split == "validation" and h.source_split == "Val"


def test_folder_without_split_level_seeded_with_options_and_label_map(tmp_path, cli, workspace):
    root = tmp_path / "line3"
    for i in range(4):
        img(root / "ok_parts" / f"p{i}.png", i)
    for i in range(2):
        img(root / "Kratzer" / f"k{i}.png", 10 + i)
        save(blob_mask(SIZE, (4, 4, 20, 20)), root / "gt_files" / f"k{i}.png")
    img(root / "gt_files/extra.png", 20)  # the masks folder is never a class
    label_map = tmp_path / "labels.yaml"
    label_map.write_text("Kratzer: scratch\n")
    out = ingest(cli, "folder", root, "--opt", "normal=ok_parts", "--opt", "masks=gt_files",
                 "--opt", "product=widget", "--label-map", str(label_map))
    assert out["records"] == 6 and out["by_label"] == {"defective": 2, "normal": 4}
    assert out["by_defect_type"] == {"scratch": 2} and out["quarantined"] == 0
    k = record(workspace, "Kratzer/k0.png")
    assert k.split_origin == "seeded" and k.source_split == "" and k.split in ("train", "validation", "test")
    assert k.source_labels == ["Kratzer"] and k.defect_types == ["scratch"] and k.product == "widget"
    assert k.mask_source_path == "gt_files/k0.png"
    assert record(workspace, "ok_parts/p0.png").label == "normal"
    # seeded splits are a pure function of (source id, group): a second run gives the same ones
    again = ingest(cli, "folder", root, "--opt", "normal=ok_parts", "--opt", "masks=gt_files",
                   "--opt", "product=widget", "--label-map", str(label_map))
    assert again["written"] == 0 and again["by_split"] == out["by_split"]


def test_generic_adapters_need_a_license(tmp_path, cli):
    root = tmp_path / "folder"
    img(root / "good/a.png")
    for adapter in ("folder", "coco", "voc", "yolo", "mvtec_like", "csv"):
        out = cli("ingest", adapter, "--root", str(root), "--workers", "1", expect=2)
        assert "needs --license" in out["error"]


def test_folder_unusable_root_is_run_level_error(tmp_path, cli):
    (tmp_path / "empty").mkdir()
    out = ingest(cli, "folder", tmp_path / "empty", expect=2)
    assert "no class folders" in out["error"]
    out = ingest(cli, "folder", tmp_path / "empty", "--opt", "masks=nope", expect=2)
    assert "masks folder not found" in out["error"]


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
    flat = reference_mask().flatten(order="F")
    runs, current, n = [], False, 0
    for v in flat:
        if v != current:
            runs.append(n)
            current, n = v, 0
        n += 1
    runs.append(n)
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
    runs, current, n = [], False, 0
    for v in unc.flatten(order="F"):
        if v != current:
            runs.append(n)
            current, n = v, 0
        n += 1
    runs.append(n)
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


# -- mvtec_like ------------------------------------------------------------------------------------
def test_mvtec_like_normal_names_mask_variants_and_category_filter(tmp_path, cli, workspace):
    root = tmp_path / "mine"
    img(root / "widget/Train/OK/000.png", 1)
    img(root / "widget/test/ok/001.png", 2)
    img(root / "widget/test/Scratches/000.png", 3)
    save(blob_mask(SIZE, (10, 10, 40, 30)), root / "widget/GroundTruth/Scratches/000_gt.png")
    img(root / "widget/test/dent/000.png", 4)
    save(blob_mask(SIZE, (5, 5, 20, 20)), root / "widget/ground_truth/dent/000.bmp")
    img(root / "widget/test/flash_mark/000.png", 5)  # no mask: class only
    img(root / "widget/validation/ok/002.png", 6)
    img(root / "gadget/train/good/000.png", 7)
    img(root / "gadget/test/hole/000.png", 8)
    save(blob_mask(SIZE, (5, 5, 20, 20)), root / "gadget/ground_truth/hole/000_mask.png")
    out = ingest(cli, "mvtec_like", root, "--opt", "normal=ok,good")
    assert out["records"] == 8 and out["by_split"] == {"test": 5, "train": 2, "validation": 1}
    assert out["by_label"] == {"defective": 4, "normal": 4}
    assert out["by_defect_type"] == {"flash_mark": 1, "dent": 1, "hole": 1, "scratch": 1}
    s = record(workspace, "widget/test/Scratches/000.png")
    assert s.product == "widget" and s.mask_source_path == "widget/GroundTruth/Scratches/000_gt.png"
    assert iou(original_mask(workspace, s), np.asarray(blob_mask(SIZE, (10, 10, 40, 30))) > 0) > 0.95
    assert record(workspace, "widget/test/dent/000.png").mask_source_path == "widget/ground_truth/dent/000.bmp"
    assert record(workspace, "widget/test/flash_mark/000.png").mask is None
    assert record(workspace, "gadget/test/hole/000.png").mask_source_path == "gadget/ground_truth/hole/000_mask.png"
    ok = record(workspace, "widget/Train/OK/000.png")
    assert ok.label == "normal" and ok.split == "train" and ok.source_labels == ["OK"]
    # with the default normal names `ok` is normal too; one category; a category folder as root keeps keys
    out = ingest(cli, "mvtec_like", root, "--category", "gadget")
    assert out["seen"] == 2 and out["written"] == 0
    out = ingest(cli, "mvtec_like", root / "gadget")
    assert out["seen"] == 2 and out["written"] == 0
    out = ingest(cli, "mvtec_like", root, "--category", "nope", expect=2)
    assert "categories not found: nope" in out["error"]


# -- csv -------------------------------------------------------------------------------------------
MANIFEST = """path,label,mask,split,boxes,product,defect_type
imgs/a.png,good,,train,,board,
imgs/b.png,defective,masks/b.png,train,"[[""scratches"",2,3,20,15]]",board,
imgs/c.jpg,Kratzer,,test,10 10 30 30 Kratzer;1 1 5 5,board,
imgs/d.png,defective,,,,board,stain
imgs/d.png,1,,,"[[""hole"",1,1,4,4]]",board,
imgs/e.png,OK,,val,,cable,
imgs/missing.png,good,,train,,board,
imgs/f.png,defective,,train,[[bad json,board,
imgs/g.png,good,,bogus,,board,
,good,,train,,board,
imgs/h.png,good,,train,,board,,extra
../outside.png,good,,train,,board,
imgs/i.png,good,,train,"[[""scratch"",1,1,2,2]]",board,
imgs/j.png,defective,masks/nope.png,train,,board,crack
imgs/k.png,bad,,train,,board,
imgs/k.png,good,,train,,board,
"""


def write_csv_source(root):
    for i, name in enumerate("abdefghijk"):
        img(root / "imgs" / f"{name}.png", i)
    img(root / "imgs/C.JPG", 20)  # listed as imgs/c.jpg: found case-insensitively
    save(blob_mask(SIZE, (2, 3, 20, 15)), root / "masks/b.png")
    (root / "manifest.csv").write_text(MANIFEST)
    img(root.parent / "outside.png", 30)


def test_csv_manifest_rows_boxes_merge_and_quarantine(tmp_path, cli, workspace):
    root = tmp_path / "csvroot"
    write_csv_source(root)
    out = ingest(cli, "csv", root)
    assert out["records"] == 5
    assert out["by_label"] == {"defective": 3, "normal": 2}
    assert out["by_defect_type"] == {"hole": 1, "kratzer": 1, "scratch": 1, "stain": 1}
    reasons = quarantine(out)
    assert reasons["imgs/missing.png"] == "listed in manifest.csv line 8 but not found"
    assert reasons["imgs/f.png"].startswith("manifest.csv line 9: boxes are not valid JSON")
    assert reasons["imgs/g.png"] == "manifest.csv line 10: unknown split 'bogus' (train, val/valid/validation or test)"
    assert reasons["manifest.csv:11"] == "manifest.csv line 11: empty path"
    assert "8 columns, the header has 7" in reasons["manifest.csv:12"]
    assert "outside the base folder" in reasons["manifest.csv:13"]
    assert "normal but the row has boxes" in reasons["imgs/i.png"]
    assert reasons["imgs/j.png"] == "mask masks/nope.png (manifest.csv line 15) not found"
    assert "both as normal and as defective" in reasons["imgs/k.png"] and "lines 16, 17" in reasons["imgs/k.png"]
    assert len(reasons) == 9

    a = record(workspace, "imgs/a.png")
    assert a.label == "normal" and a.split == "train" and a.product == "board" and a.source_labels == ["good"]
    b = record(workspace, "imgs/b.png")
    assert b.source_labels == ["scratches"] and b.defect_types == ["scratch"] and b.mask_source_path == "masks/b.png"
    assert box_tuple(b.boxes[0]) == canvas_box(b, 2, 3, 20, 15) and b.attributes.basis == "mask"
    c = record(workspace, "imgs/C.JPG")
    assert c.split == "test" and c.source_labels == ["Kratzer"] and c.defect_types == ["kratzer"]
    assert [box_tuple(x) for x in c.boxes] == [canvas_box(c, 10, 10, 30, 30), canvas_box(c, 1, 1, 5, 5)]
    d = record(workspace, "imgs/d.png")
    assert d.source_labels == ["stain", "hole"] and d.defect_types == ["stain", "hole"]
    assert d.split_origin == "seeded" and d.source_split == "" and len(d.boxes) == 1
    e = record(workspace, "imgs/e.png")
    assert e.split == "validation" and e.product == "cable" and e.label == "normal"

    # the manifest file itself as root, and the --category filter on the product column
    out = ingest(cli, "csv", root / "manifest.csv", "--category", "cable")
    assert out["seen"] == 1 and out["written"] == 0


def test_csv_semicolon_manifest_with_base_option(tmp_path, cli, workspace):
    root = tmp_path / "proj"
    img(root / "data/x.png", 1)
    img(root / "data/y.png", 2)
    (root / "meta").mkdir()
    (root / "meta/list.csv").write_text("Image;Class\ndata/x.png;no_defect\ndata/y.png;Scratches\n")
    (root / "meta/other.csv").write_text("unrelated\n")
    out = ingest(cli, "csv", root / "meta", expect=2)
    assert "several CSV files" in out["error"]
    out = ingest(cli, "csv", root / "meta", "--opt", "manifest=list.csv", "--opt", "base=..")
    assert out["records"] == 2 and out["by_defect_type"] == {"scratch": 1} and out["quarantined"] == 0
    assert record(workspace, "data/y.png").split_origin == "seeded"
    (root / "meta/bad.csv").write_text("file,whatever\n")
    out = ingest(cli, "csv", root / "meta/bad.csv", expect=2)
    assert "needs columns path and label" in out["error"]


def test_csv_box_parser():
    assert parse_boxes('[["a", 1, 2, 3, 4], [5, 6, 7, 8]]', "d") == [("a", 1, 2, 3, 4), ("d", 5, 6, 7, 8)]
    assert parse_boxes("1 2 3 4 big scratch; 5 6 7 8", "x") == [("big scratch", 1, 2, 3, 4), ("x", 5, 6, 7, 8)]
    from imdd_build.sources.csv_manifest import RowError
    with pytest.raises(RowError, match="empty"):
        parse_boxes("[[1, 2, 1, 4]]", "x")
