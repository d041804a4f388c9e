import pytest
from pydantic import ValidationError

from imdd_build.geometry import canvas_geometry
from imdd_build.record import KEY_RE, Record, make_key


@pytest.mark.parametrize("source,path,expected", [
    ("mvtec", "bottle/test/broken_large/000.png", "mvtec/bottle/test/broken_large/000"),
    ("visa", "candle/Data/Images/Anomaly/000.JPG", "visa/candle/data/images/anomaly/000"),
    ("x", "A dir/file.name.v2.TIFF", "x/a_dir/file_name_v2"),
    ("x", "dir.with.dots/img", "x/dir_with_dots/img"),
    ("x", "weird (1)/ümlaut+file.png", "x/weird_1/mlaut_file"),
])
def test_make_key_is_clean_and_stable(source, path, expected):
    key = make_key(source, path)
    assert key == expected
    assert KEY_RE.match(key) and "." not in key


def test_make_key_tile_suffix():
    assert make_key("severstal", "train_images/a.jpg", tile=3) == "severstal/train_images/a/t03"


def _record(**over):
    base = dict(key="mvtec/bottle/train/good/000", source="mvtec", domain="glass_container", product="bottle",
                split="train", source_split="train", label="normal", source_path="bottle/train/good/000.png",
                sha256="0" * 64, orig_width=900, orig_height=900, orig_mode="RGB",
                geometry=canvas_geometry(900, 900), image="ab.png", image_format="png", license="CC-BY-NC-SA-4.0")
    base.update(over)
    return Record(**base)


def test_record_rejects_dotted_keys_and_unknown_splits():
    with pytest.raises(ValidationError):
        _record(key="mvtec/bottle/000.png")
    with pytest.raises(ValidationError):
        _record(split="val")
    with pytest.raises(ValidationError):
        _record(label="good")


def test_shard_metadata_excludes_pixel_refs():
    meta = _record(mask="cd.png").shard_metadata()
    assert "image" not in meta and "mask" not in meta
    assert meta["has_mask"] is True and meta["geometry"]["resize_mode"] == "letterbox"
