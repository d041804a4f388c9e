from pathlib import Path

import pytest

from fixtures import noise_image, save
from imdd_build.record import make_key
from imdd_build.sourcekit.base import RootError, seeded_split
from imdd_build.sources.casting import CastingAdapter
from imdd_build.workspace import Workspace


def write_casting(root: Path, small: bool = True, large: bool = True) -> None:
    """The Kaggle zip: doubled folder names, `.jpeg` files, gray content stored as RGB."""
    seed = 0
    if small:
        base = root / "casting_data/casting_data"
        for split, n_def, n_ok in (("train", 3, 2), ("test", 1, 2)):
            for cls, n, prefix in (("def_front", n_def, "cast_def_0"), ("ok_front", n_ok, "cast_ok_0")):
                for i in range(n):
                    seed += 1
                    save(noise_image((30, 30), "L", seed=seed).convert("RGB"), base / split / cls / f"{prefix}_{i}.jpeg", "JPEG")
        (base / "train/ok_front/.DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    if large:
        base = root / "casting_512x512/casting_512x512"
        for cls, n, prefix in (("def_front", 2, "cast_def_0"), ("ok_front", 3, "cast_ok_0")):
            for i in range(n):
                seed += 1
                save(noise_image((40, 40), "L", seed=seed).convert("RGB"), base / cls / f"{prefix}_{100 + i}.jpeg", "JPEG")


def test_default_300_set_official_split_never_both(tmp_path, cli, workspace):
    write_casting(tmp_path / "casting")
    out = cli("ingest", "casting", "--root", str(tmp_path / "casting"), "--workers", "1")
    assert out["records"] == 8 and out["quarantined"] == 0
    assert out["by_split"] == {"test": 3, "train": 5}
    assert out["by_label"] == {"defective": 4, "normal": 4}
    assert out["by_defect_type"] == {"anomaly": 4}
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("casting", "casting_data/casting_data/train/def_front/cast_def_0_1.jpeg"))
        assert r.label == "defective" and r.source_labels == ["def_front"] and r.defect_types == ["anomaly"]
        assert r.source_split == "train" and r.split_origin == "official" and r.domain == "casting"
        assert r.orig_format == "JPEG" and r.source_attributes == {"variant": 300}
        ok = catalog.get(make_key("casting", "casting_data/casting_data/test/ok_front/cast_ok_0_1.jpeg"))
        assert ok.label == "normal" and ok.split == "test" and ok.source_labels == ["ok_front"]
        assert all(rec.source_path.startswith("casting_data/") for rec in catalog.iter_records(source="casting"))


def test_512_variant_seeded_split(tmp_path, cli, workspace):
    write_casting(tmp_path / "casting")
    out = cli("ingest", "casting", "--root", str(tmp_path / "casting"), "--workers", "1", "--opt", "variant=512")
    assert out["records"] == 5 and out["by_label"] == {"defective": 2, "normal": 3}
    with Workspace(workspace).catalog() as catalog:
        r = catalog.get(make_key("casting", "casting_512x512/casting_512x512/def_front/cast_def_0_100.jpeg"))
        assert r.split_origin == "seeded" and r.source_split == "" and r.split == seeded_split("casting", "cast_def_0_100")
        assert r.source_attributes == {"variant": 512}
        assert catalog.get(make_key("casting", "casting_data/casting_data/train/def_front/cast_def_0_1.jpeg")) is None


def test_single_folders_missing_set_and_bad_variant(tmp_path, cli):
    write_casting(tmp_path / "only512", small=False)
    out = cli("ingest", "casting", "--root", str(tmp_path / "only512"), expect=2)
    assert "300 px casting set" in out["error"] and "--opt variant=512" in out["error"]
    # pointed at the inner folder, or an archive without the doubled names
    inner = list(CastingAdapter(tmp_path / "only512/casting_512x512/casting_512x512", variant=512).samples())
    assert len(inner) == 5 and inner[0].rel_path == "def_front/cast_def_0_100.jpeg"
    write_casting(tmp_path / "flat", large=False)
    (tmp_path / "flat/casting_data/casting_data").rename(tmp_path / "flat/data")
    (tmp_path / "flat/casting_data").rmdir()
    (tmp_path / "flat/data").rename(tmp_path / "flat/casting_data")
    flat = list(CastingAdapter(tmp_path / "flat").samples())
    assert len(flat) == 8 and flat[0].rel_path.startswith("casting_data/test/")
    with pytest.raises(RootError, match="variant: Input should be '300' or '512'"):
        list(CastingAdapter(tmp_path / "flat", variant=1024).samples())
