import io

import numpy as np
import pytest
from PIL import Image

from fixtures import noise_image, save, truncate
from imdd_build.normalize import NormalizeOptions, SampleError, load_mask_array, normalize_image

OPTS = NormalizeOptions()


def _decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "CMYK", "1", "LA"])
def test_every_mode_becomes_512_rgb_and_mode_is_recorded(tmp_path, mode):
    src = noise_image((120, 80), seed=1).convert(mode)
    path = save(src, tmp_path / f"x.{'tif' if mode == 'CMYK' else 'png'}")
    out = normalize_image(path, OPTS)
    im = _decode(out.data)
    assert (im.size, im.mode) == ((512, 512), "RGB")
    assert out.orig_mode == mode and out.format == "png"
    assert (out.orig_width, out.orig_height) == (120, 80)


def test_sixteen_bit_uses_the_range_of_the_container(tmp_path):
    arr = np.tile(np.linspace(0, 4095, 64, dtype=np.uint16), (64, 1))  # 12-bit data in 16 bits
    path = tmp_path / "depth.png"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode.startswith("I")
    out = normalize_image(path, OPTS)
    px = np.asarray(_decode(out.data))
    assert px.max() >= 250 and px.min() <= 5  # full 8-bit range, not a black image


def test_alpha_is_composited_on_white(tmp_path):
    im = Image.new("RGBA", (50, 50), (255, 0, 0, 0))
    path = save(im, tmp_path / "a.png")
    px = np.asarray(_decode(normalize_image(path, OPTS).data))
    assert tuple(px[256, 256]) == (255, 255, 255)


def test_exif_orientation_is_applied(tmp_path):
    im = noise_image((80, 40), seed=2)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    path = tmp_path / "rot.jpg"
    im.save(path, "JPEG", exif=exif.tobytes())
    out = normalize_image(path, OPTS)
    assert (out.orig_width, out.orig_height, out.exif_orientation) == (40, 80, 6)
    assert out.geometry.content_box == (128, 0, 384, 512)  # portrait after transposing


def test_jpeg_stays_jpeg_at_quality_and_png_is_lossless(tmp_path):
    jpg = save(noise_image((1024, 1024), seed=3), tmp_path / "a.jpg")
    out = normalize_image(jpg, NormalizeOptions(jpeg_quality=80))
    assert out.format == "jpeg" and _decode(out.data).format == "JPEG"
    # A 512x512 PNG of the output mode passes through untouched (no re-encode).
    png = save(noise_image((512, 512), seed=4), tmp_path / "b.png")
    assert normalize_image(png, OPTS).data == png.read_bytes()
    # Upscaled PNGs are stored as PNG.
    small = save(noise_image((64, 64), seed=5), tmp_path / "c.bmp")
    assert normalize_image(small, OPTS).format == "png"


def test_output_is_deterministic(tmp_path):
    path = save(noise_image((700, 300), seed=6), tmp_path / "d.jpg")
    assert normalize_image(path, OPTS).data == normalize_image(path, OPTS).data


@pytest.mark.parametrize("maker,reason", [
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: truncate(save(noise_image((200, 200), seed=7), p)), "truncated"),
    (lambda p: p.write_bytes(b"this is not an image at all"), "not a readable image"),
])
def test_bad_files_raise_sample_errors(tmp_path, maker, reason):
    path = tmp_path / "bad.png"
    maker(path)
    with pytest.raises(SampleError, match=reason):
        normalize_image(path, OPTS)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = save(Image.new("L", (4000, 4000)), tmp_path / "bomb.png")
    with pytest.raises(SampleError, match="decompression bomb: 4000x4000"):
        normalize_image(path, NormalizeOptions(max_pixels=1_000_000))


def test_mask_checks_size_and_binarizes_class_indices(tmp_path):
    arr = np.zeros((40, 60), np.uint8)
    arr[5:10, 5:10] = 3
    path = save(Image.fromarray(arr), tmp_path / "m.png")
    mask = load_mask_array(path, (60, 40), OPTS.max_pixels)
    assert set(np.unique(mask)) == {0, 255} and (mask == 255).sum() == 25
    with pytest.raises(SampleError, match="mask size 60x40 does not match image size 64x40"):
        load_mask_array(path, (64, 40), OPTS.max_pixels)


def test_palette_mask_uses_indices_not_colours(tmp_path):
    arr = np.zeros((20, 20), np.uint8)
    arr[2:6, 2:6] = 1
    im = Image.fromarray(arr, "P")
    im.putpalette([0, 0, 0] * 256)  # every index is drawn black
    path = save(im, tmp_path / "p.png")
    assert (load_mask_array(path, (20, 20), OPTS.max_pixels) == 255).sum() == 16
