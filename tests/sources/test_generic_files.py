"""The generic adapters for users' own files: folder, mvtec_like and csv."""

import numpy as np
import pytest

from fixtures import blob_mask, save
from generic_helpers import SIZE, box_tuple, canvas_box, img, ingest, iou, original_mask, quarantine, record
from imdd_build.sources.csv_manifest import parse_boxes


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
