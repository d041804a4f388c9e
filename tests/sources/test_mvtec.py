import numpy as np
from PIL import Image

from fixtures import write_mvtec
from imdd_build.geometry import mask_to_original
from imdd_build.record import Record
from imdd_build.sources.mvtec import MVTecAdapter
from imdd_build.workspace import Workspace


def test_adapter_pairs_masks_and_skips_stray_files(tmp_path):
    write_mvtec(tmp_path / "mvtec")
    samples = list(MVTecAdapter(tmp_path / "mvtec").samples())
    paths = {s.rel_path for s in samples}
    assert "bottle/test/contamination/._000.png" not in paths and len(samples) == 12
    broken = next(s for s in samples if s.rel_path == "bottle/test/broken_large/001.png")
    assert broken.mask_path == "bottle/ground_truth/broken_large/001_mask.png" and broken.label == "defective"
    good = next(s for s in samples if s.rel_path == "bottle/train/good/000.png")
    assert good.label == "normal" and good.mask_path is None and good.our_split() == "train"


def test_ingest_counts_labels_masks_and_quarantine(tmp_path, cli, workspace):
    expected = write_mvtec(tmp_path / "mvtec")
    out = cli("ingest", "mvtec", "--root", str(tmp_path / "mvtec"), "--workers", "1")
    assert out["records"] == expected["records"]
    assert out["by_split"] == expected["by_split"] and out["by_label"] == expected["by_label"]
    assert out["by_defect_type"] == {"break": 2, "scratch": 1}
    reasons = {q["path"]: q["reason"] for q in out["quarantine"]}
    assert set(reasons) == expected["quarantined"]
    assert "truncated" in reasons["bottle/test/contamination/000.png"]
    assert "mask bottle/ground_truth/contamination/001_mask.png: mask size 50x50 does not match image size 96x64" \
        in reasons["bottle/test/contamination/001.png"]
    assert reasons["bottle/test/contamination/002.png"] == "empty file (0 bytes)"
    # the one-line errors were shown as they happened
    assert "quarantined mvtec:bottle/test/contamination/002.png: empty file (0 bytes)" in cli.last.stderr

    ws = Workspace(workspace)
    with ws.catalog() as catalog:
        screw = catalog.get("mvtec/screw/test/scratch_head/000")
        bottle = catalog.get("mvtec/bottle/test/broken_large/001")
        assert screw.orig_mode == "L" and screw.domain == "fastener" and screw.license == "CC-BY-NC-SA-4.0"
        assert bottle.defect_types == ["break"] and bottle.source_labels == ["broken_large"]
        assert bottle.boxes and bottle.attributes.basis == "mask" and bottle.boxes[0].label == "break"
        assert screw.defect_types == ["scratch"] and screw.defect_labels[0].part == "head"
        _check_mask_round_trip(ws, bottle, tmp_path / "mvtec" / bottle.mask_source_path)
        assert len(catalog.quarantined("mvtec")) == 3


def _check_mask_round_trip(ws: Workspace, record: Record, original_mask_path) -> None:
    canvas = np.asarray(Image.open(ws.store().path(record.mask)))
    image = Image.open(ws.store().path(record.image))
    assert image.size == (512, 512) and image.mode == "RGB"
    back = mask_to_original(canvas, record.geometry, record.orig_width, record.orig_height) > 0
    original = np.asarray(Image.open(original_mask_path)) > 0
    assert (back & original).sum() / (back | original).sum() >= 0.98


def test_reingest_changes_nothing_and_single_category_root_gives_same_keys(tmp_path, cli):
    write_mvtec(tmp_path / "mvtec")
    first = cli("ingest", "mvtec", "--root", str(tmp_path / "mvtec"), "--workers", "1")
    again = cli("ingest", "mvtec", "--root", str(tmp_path / "mvtec"), "--workers", "1")
    assert first["written"] == 9 and again["written"] == 0 and again["unchanged"] == 9
    assert again["records"] == 9
    one = cli("ingest", "mvtec", "--root", str(tmp_path / "mvtec" / "screw"), "--workers", "1")
    assert one["seen"] == 3 and one["written"] == 0 and one["records"] == 9
    assert one["unchanged"] == 3 and one["quarantined"] == 0  # same keys, same fingerprints


def test_quarantined_file_fixed_later_is_ingested_and_leaves_quarantine(tmp_path, cli):
    from fixtures import noise_image, save
    write_mvtec(tmp_path / "mvtec")
    cli("ingest", "mvtec", "--root", str(tmp_path / "mvtec"), "--workers", "1")
    save(noise_image((96, 64), seed=99), tmp_path / "mvtec/bottle/test/contamination/002.png")
    out = cli("ingest", "mvtec", "--root", str(tmp_path / "mvtec"), "--workers", "1")
    assert out["records"] == 10 and out["written"] == 1
    assert "bottle/test/contamination/002.png" not in {q["path"] for q in cli("quarantine")["items"]}


def test_changing_resize_mode_renormalizes_and_keeps_masks_aligned(tmp_path, cli, workspace):
    write_mvtec(tmp_path / "mvtec")
    cli("ingest", "mvtec", "--root", str(tmp_path / "mvtec"), "--workers", "1")
    cli("caption")
    out = cli("ingest", "mvtec", "--root", str(tmp_path / "mvtec"), "--workers", "1", "--resize-mode", "stretch")
    assert out["written"] == 9 and out["records"] == 9
    with Workspace(workspace).catalog() as catalog:
        bottle = catalog.get("mvtec/bottle/test/broken_large/000")
        assert bottle.geometry.resize_mode == "stretch" and bottle.geometry.content_box == (0, 0, 512, 512)
        assert bottle.caption is None  # template drafts are redrafted after a geometry change
        _check_mask_round_trip(Workspace(workspace), bottle, tmp_path / "mvtec" / bottle.mask_source_path)


def test_expert_caption_survives_reingest_of_the_same_file(tmp_path, cli, workspace):
    write_mvtec(tmp_path / "mvtec")
    cli("ingest", "mvtec", "--root", str(tmp_path / "mvtec"), "--workers", "1")
    ws = Workspace(workspace)
    with ws.catalog() as catalog:
        r = catalog.get("mvtec/screw/test/scratch_head/000")
        catalog.set_captions([r.model_copy(update={"caption": "expert text", "caption_source": "expert",
                                                   "caption_status": "verified"})])
    cli("ingest", "mvtec", "--root", str(tmp_path / "mvtec"), "--workers", "1", "--resize-mode", "crop")
    assert cli("caption", "--force")["kept"] == 1
    with ws.catalog() as catalog:
        r = catalog.get("mvtec/screw/test/scratch_head/000")
        assert (r.caption, r.caption_status, r.geometry.resize_mode) == ("expert text", "verified", "crop")
