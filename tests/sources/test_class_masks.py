"""`class_mask` values match the source's classes, for every class-aware source (issue 15): mapped
back to the original pixels, each class's region is the one the source drew for it."""

import json

import numpy as np
from PIL import Image

from class_mask_check import check_class_masks
from fixtures import blob_mask, noise_image, save, write_mvtec, write_visa_raw
from generic_helpers import SIZE, coco_runs, img, ingest, iou, record
from imdd_build.geometry import mask_to_original
from imdd_build.record import make_key
from imdd_build.taxonomy import load_taxonomy, norm_label
from imdd_build.workspace import Workspace
from test_eyecandies import write_eyecandies
from test_mvtec_loco import write_loco
from test_realiad import write_realiad
from test_severstal import H, W, _masks, write_severstal


def type_of(source: str, label: str) -> str:
    """The canonical type ingest gives a source label (the real taxonomy)."""
    r = load_taxonomy().resolve(source, label, {})
    return r.type or norm_label(label)


def classes_back(workspace, rec) -> dict[str, np.ndarray]:
    """Defect type -> its pixels in the original image, from the stored class mask."""
    assert rec.class_mask is not None, rec.key
    canvas = np.asarray(Image.open(Workspace(workspace).store().path(rec.class_mask)))
    back = mask_to_original(canvas, rec.geometry, rec.orig_width, rec.orig_height)
    return {t: back == k for k, t in enumerate(rec.defect_types, start=1) if (back == k).any()}


def get(workspace, source, rel):
    with Workspace(workspace).catalog() as catalog:
        rec = catalog.get(make_key(source, rel))
    assert rec is not None, rel
    return rec


def test_severstal_per_class_rle(tmp_path, cli, workspace):
    write_severstal(tmp_path / "s")
    args = ("ingest", "severstal", "--root", str(tmp_path / "s"), "--workers", "1", "--resize-mode", "letterbox",
            "--opt", f"rle_shape={H}x{W}")
    cli(*args)
    a, b1, b3 = _masks()
    # The taxonomy maps every ClassId to `anomaly` (no official names): one class, nothing made up.
    two = get(workspace, "severstal", "train_images/000f6bf48.jpg")
    assert two.defect_types == ["anomaly"] and np.array_equal(classes_back(workspace, two)["anomaly"], b1 | b3)
    # Named by the user's label map, the classes stay apart.
    names = tmp_path / "labels.yaml"
    names.write_text('"1": pit\n"3": scratch\n')
    cli(*args, "--label-map", str(names))
    two = get(workspace, "severstal", "train_images/000f6bf48.jpg")
    assert two.defect_types == ["pit", "scratch"] and two.attributes.instances == {"pit": 1, "scratch": 1}
    got = classes_back(workspace, two)
    assert np.array_equal(got["scratch"], b3) and np.array_equal(got["pit"], b1 & ~b3)  # later class wins overlaps
    one = get(workspace, "severstal", "train_images/0002cc93b.jpg")
    assert list(classes_back(workspace, one)) == ["pit"] and np.array_equal(classes_back(workspace, one)["pit"], a)


def test_visa_class_index_masks_by_id2class(tmp_path, cli, workspace):
    write_visa_raw(tmp_path / "visa")
    cli("ingest", "visa", "--root", str(tmp_path / "visa"), "--workers", "1")
    rec = get(workspace, "visa", "pcb1/Data/Images/Anomaly/001.JPG")  # pcb1: 1 Bent, 2 Melt
    bent, melt = type_of("visa", "Bent"), type_of("visa", "Melt")
    got = classes_back(workspace, rec)
    assert set(got) == {bent, melt} and rec.attributes.instances == {bent: 1, melt: 1}
    one, two = np.zeros((70, 70), bool), np.zeros((70, 70), bool)
    one[10:30, 10:30], two[35:45, 40:60] = True, True
    assert iou(got[bent], one) > 0.9 and iou(got[melt], two) > 0.9


def test_coco_polygons_and_rles_of_several_categories(tmp_path, cli, workspace):
    root = tmp_path / "coco"
    img(root / "train2017/p.png", 1, size=(48, 40))
    hole = np.zeros((40, 48), bool)
    hole[20:36, 30:44] = True
    runs = coco_runs(hole)
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [4, 6, 20, 10],
             "segmentation": [[4, 6, 24, 6, 24, 16, 4, 16]]},
            {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 0, "bbox": [30, 20, 14, 16],
             "segmentation": {"size": [40, 48], "counts": runs}}]
    (root / "annotations").mkdir(parents=True)
    (root / "annotations/instances_train2017.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "p.png", "width": 48, "height": 40}], "annotations": anns,
        "categories": [{"id": 1, "name": "scratches"}, {"id": 2, "name": "hole"}]}))
    ingest(cli, "coco", root)
    rec = record(workspace, "train2017/p.png")
    assert rec.defect_types == ["scratch", "hole"] and rec.attributes.instances == {"hole": 1, "scratch": 1}
    got = classes_back(workspace, rec)
    poly = np.zeros((40, 48), bool)
    poly[6:17, 4:25] = True
    assert iou(got["scratch"], poly) > 0.9 and iou(got["hole"], hole) > 0.95


def test_voc_segmentation_class_named_by_labelmap(tmp_path, cli, workspace):
    voc = tmp_path / "voc"
    img(voc / "JPEGImages/a.png", 1)
    (voc / "Annotations").mkdir(parents=True)
    (voc / "Annotations/a.xml").write_text(
        "<annotation><filename>a.png</filename>"
        + "".join(f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
                  f"<ymax>{b[3]}</ymax></bndbox></object>" for n, b in (("scratches", (10, 5, 29, 20)),
                                                                        ("Mouse_bite", (40, 30, 50, 40))))
        + "</annotation>")
    (voc / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nbackground:0,0,0::\n"
                                      "scratches:128,0,0::\nMouse_bite:0,128,0::\n")
    seg = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    seg[5:21, 10:30] = 1
    seg[30:41, 40:51] = 2
    seg[4, 9:31] = 255  # void border
    pal = Image.fromarray(seg, "P")
    pal.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [224, 224, 192] * 253)
    save(pal, voc / "SegmentationClass/a.png")
    ingest(cli, "voc", voc)
    rec = record(workspace, "JPEGImages/a.png")
    got = classes_back(workspace, rec)
    assert rec.defect_types == ["scratch", "mouse_bite"]
    assert iou(got["scratch"], seg == 1) > 0.95 and iou(got["mouse_bite"], seg == 2) > 0.95


def test_voc_several_classes_without_labelmap_have_no_class_mask(tmp_path, cli, workspace):
    voc = tmp_path / "voc"
    img(voc / "JPEGImages/a.png", 1)
    (voc / "Annotations").mkdir(parents=True)
    (voc / "Annotations/a.xml").write_text(
        "<annotation><filename>a.png</filename>"
        "<object><name>scratches</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox>"
        "</object><object><name>hole</name><bndbox><xmin>20</xmin><ymin>20</ymin><xmax>29</xmax><ymax>29</ymax>"
        "</bndbox></object></annotation>")
    seg = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    seg[1:10, 1:10], seg[20:30, 20:30] = 7, 9  # which index is which class is not said
    save(Image.fromarray(seg, "L"), voc / "SegmentationClass/a.png")
    ingest(cli, "voc", voc)
    rec = record(workspace, "JPEGImages/a.png")
    assert rec.mask is not None and rec.class_mask is None
    assert rec.attributes.instances == {"hole": 1, "scratch": 1}  # from the boxes


def test_yolo_polygons_of_two_classes(tmp_path, cli, workspace):
    root = tmp_path / "yolo"
    img(root / "images/x.png", 3)
    (root / "labels").mkdir(parents=True)
    (root / "labels/x.txt").write_text("0 0.1 0.1 0.4 0.1 0.4 0.4 0.1 0.4\n1 0.6 0.6 0.9 0.6 0.9 0.9 0.6 0.9\n"
                                       "1 0.6 0.1 0.9 0.1 0.9 0.3 0.6 0.3\n")
    ingest(cli, "yolo", root, "--opt", "names=[scratches,hole]")
    rec = record(workspace, "images/x.png")
    assert rec.defect_types == ["scratch", "hole"] and rec.attributes.instances == {"hole": 2, "scratch": 1}
    got = classes_back(workspace, rec)
    w, h = SIZE
    scratch = np.zeros((h, w), bool)
    scratch[round(0.1 * h):round(0.4 * h), round(0.1 * w):round(0.4 * w)] = True
    assert iou(got["scratch"], scratch) > 0.8 and got["hole"][round(0.75 * h), round(0.75 * w)]


def test_eyecandies_typed_masks(tmp_path, cli, workspace):
    write_eyecandies(tmp_path / "eye")
    cli("ingest", "eyecandies", "--root", str(tmp_path / "eye"), "--workers", "1")
    rec = get(workspace, "eyecandies", "CandyCane/test_public/data/001_image_5.png")
    bumps, colors = type_of("eyecandies", "bumps"), type_of("eyecandies", "colors")
    got = classes_back(workspace, rec)
    assert set(got) == {bumps, colors}
    assert iou(got[bumps], np.asarray(blob_mask((48, 48), (5, 5, 20, 20))) > 0) > 0.95
    assert iou(got[colors], np.asarray(blob_mask((48, 48), (25, 25, 45, 45))) > 0) > 0.95


def test_mvtec_loco_subtypes(tmp_path, cli, workspace):
    write_loco(tmp_path / "loco")
    cli("ingest", "mvtec_loco", "--root", str(tmp_path / "loco"), "--workers", "1")
    rec = get(workspace, "mvtec_loco", "breakfast_box/test/logical_anomalies/000.png")
    got = classes_back(workspace, rec)
    almonds, oranges = np.zeros((48, 64), bool), np.zeros((48, 64), bool)
    almonds[2:12, 2:12], oranges[30:45, 40:60] = True, True  # gray 255 and 241 in defects_config.json
    assert np.array_equal(got["missing_almonds"], almonds) and np.array_equal(got["too_many_oranges"], oranges)


def test_single_type_sources_class_mask_is_the_mask_times_one(tmp_path, cli, workspace):
    write_mvtec(tmp_path / "mvtec")
    cli("ingest", "mvtec", "--root", str(tmp_path / "mvtec"), "--workers", "1")
    write_realiad(tmp_path / "realiad")
    cli("ingest", "realiad", "--root", str(tmp_path / "realiad"), "--workers", "1")
    store = Workspace(workspace).store()
    with Workspace(workspace).catalog() as catalog:
        masked = [r for r in catalog.iter_records() if r.mask is not None and r.label == "defective"]
    assert {r.source for r in masked} == {"mvtec", "realiad"}
    for r in masked:
        mask = np.asarray(Image.open(store.path(r.mask)))
        classes = np.asarray(Image.open(store.path(r.class_mask)))
        assert len(r.defect_types) == 1 and np.array_equal(classes, (mask > 0).astype(np.uint8))
    assert check_class_masks(workspace) >= len(masked)


def test_normal_images_class_mask_is_empty(tmp_path, cli, workspace):
    save(noise_image((40, 40), seed=1), tmp_path / "f/good/a.png")
    save(noise_image((40, 40), seed=2), tmp_path / "f/dent/b.png")
    save(blob_mask((40, 40), (5, 5, 15, 15)), tmp_path / "f/dent/b_mask.png")
    ingest(cli, "folder", tmp_path / "f")
    b = record(workspace, "dent/b.png")
    assert b.attributes.instances == {"dent": 1} and set(classes_back(workspace, b)) == {"dent"}
