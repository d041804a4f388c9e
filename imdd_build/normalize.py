"""Bring any source image (and its mask) to a deterministic 512x512 RGB canvas.

Order of operations: size/bomb checks before decoding, reduced-scale JPEG decode when downscaling,
full decode (truncation is detected here), EXIF transpose, mode to 8-bit L/RGB, area filter for
downscaling or bicubic for upscaling into the canvas geometry, encode (PNG for lossless sources,
JPEG for JPEG sources). Masks follow the same geometry with nearest neighbour.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .geometry import canvas_geometry, source_box, tile_geometries
from .maskops import binarize
from .record import Geometry

LOSSY_FORMATS = {"JPEG", "MPO"}
_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}


class SampleError(Exception):
    """A per-sample failure: the file goes to quarantine with this message as its reason."""


@dataclass(frozen=True)
class NormalizeOptions:
    resize_mode: str = "letterbox"
    size: int = 512
    jpeg_quality: int = 95
    max_pixels: int = 150_000_000
    alpha_background: tuple[int, int, int] = (255, 255, 255)
    tile_aspect: float = 2.0  # tile mode: long side / short side above which an image is cut into windows
    tile_overlap: float = 0.25  # tile mode: least share of a window its neighbour overlaps

    def fingerprint(self) -> str:
        tile = f"/a{self.tile_aspect}/o{self.tile_overlap}" if self.resize_mode == "tile" else ""
        return f"{self.resize_mode}/{self.size}/q{self.jpeg_quality}/bg{self.alpha_background}{tile}"


#: (original width, original height) -> the canvases to render (several for tiles).
GeometryPlan = Callable[[int, int], "list[Geometry]"]


def plan_geometries(width: int, height: int, options: NormalizeOptions) -> list[Geometry]:
    """The canvases of an image under `options` alone (ingest adds what the labels ask of crop)."""
    if options.resize_mode == "tile":
        return tile_geometries(width, height, options.size, options.tile_aspect, options.tile_overlap)
    return [canvas_geometry(width, height, options.resize_mode, options.size)]


@dataclass
class NormalizedImage:
    data: bytes
    format: str  # "png" | "jpeg"
    geometry: Geometry
    orig_width: int
    orig_height: int
    orig_mode: str
    orig_format: str | None
    exif_orientation: int


def _open_checked(path: Path, max_pixels: int) -> Image.Image:
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise SampleError(f"cannot read file: {exc.strerror or exc}") from exc
    if size == 0:
        raise SampleError("empty file (0 bytes)")
    try:
        im = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise SampleError(f"decompression bomb: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise SampleError(f"not a readable image: {exc}") from exc
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise SampleError(f"decompression bomb: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}")
    return im


def _load(im: Image.Image) -> None:
    try:
        im.load()
    except (OSError, SyntaxError, ValueError, IndexError) as exc:
        raise SampleError(f"corrupt or truncated image data: {exc}") from exc


def _orientation(im: Image.Image) -> int:
    try:
        value = int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a broken EXIF block must not lose the image
        return 1
    return value if 1 <= value <= 8 else 1


def _sixteen_bit_to_l(im: Image.Image) -> Image.Image:
    arr = np.asarray(im, dtype=np.int64) if im.mode != "F" else np.asarray(im, dtype=np.float64)
    if im.mode == "F":
        peak = float(arr.max()) if arr.size else 0.0
        scaled = arr * 255.0 if peak <= 1.0 else arr
        return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")
    peak = int(arr.max()) if arr.size else 0
    # 12-bit sensors store 0..4095 in a 16-bit container; scale by the container actually used.
    full = 65535 if peak > 4095 else 4095 if peak > 255 else 255
    arr = np.clip(arr, 0, full)
    return Image.fromarray(((arr * 255 + full // 2) // full).astype(np.uint8), "L")


def to_8bit(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any PIL mode to 8-bit "L" or "RGB" (alpha composited onto `background`)."""
    mode = im.mode
    if mode in ("L", "RGB"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode.startswith("I") or mode == "F":
        return _sixteen_bit_to_l(im)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return im.convert("RGB")


def _resample(src_w: float, src_h: float, dst_w: int, dst_h: int) -> int:
    return Image.Resampling.BOX if dst_w * dst_h < src_w * src_h else Image.Resampling.BICUBIC


def place_on_canvas(im: Image.Image, geometry: Geometry, orig_w: int, orig_h: int, resample: int | None) -> Image.Image:
    """Resize the visible part of `im` (which may be a reduced decode of the original) into the canvas."""
    box = source_box(geometry, orig_w, orig_h, im.width, im.height)
    cx0, cy0, cx1, cy1 = geometry.content_box
    dst = (cx1 - cx0, cy1 - cy0)
    if resample is None:
        resample = _resample(box[2] - box[0], box[3] - box[1], *dst)
    content = im.resize(dst, resample, box=box)
    if dst == (geometry.size, geometry.size):
        return content
    canvas = Image.new(im.mode, (geometry.size, geometry.size), 0)
    canvas.paste(content, (cx0, cy0))
    return canvas


PNG_COMPRESS_LEVEL = 1
PNG_COMPRESS_TYPE = zlib.Z_RLE
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(im: Image.Image) -> bytes:
    """8-bit L or RGB as PNG: the "Up" filter on every row (one vectorized subtraction) and zlib's
    run-length strategy at level 1.

    Measured on 512x512 canvases (bench/README.md): 3-4x faster than Pillow's encoder, whose
    per-row adaptive filter choice is most of its time, for the same size or smaller (noisy
    synthetic photos 526 vs 522 KB, real MTD/DeepPCB images 5-15% smaller). Deterministic: the bytes
    depend only on the pixels and the zlib settings. Other modes go through Pillow.
    """
    if im.mode not in ("L", "RGB"):
        buf = io.BytesIO()
        im.save(buf, "PNG", optimize=False, compress_level=PNG_COMPRESS_LEVEL, compress_type=PNG_COMPRESS_TYPE)
        return buf.getvalue()
    arr = np.asarray(im)
    h, w = arr.shape[:2]
    rows = arr.reshape(h, -1)
    filtered = np.empty((h, rows.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = 2  # filter type Up: each byte minus the byte above it (mod 256)
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    compressor = zlib.compressobj(PNG_COMPRESS_LEVEL, zlib.DEFLATED, 15, 9, PNG_COMPRESS_TYPE)
    idat = compressor.compress(filtered.data) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2 if im.mode == "RGB" else 0, 0, 0, 0)
    return _PNG_SIGNATURE + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _encode(im: Image.Image, fmt: str, quality: int) -> bytes:
    if fmt != "jpeg":
        return encode_png(im)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, optimize=False, progressive=False)
    return buf.getvalue()


def normalize_image(path: Path, options: NormalizeOptions) -> NormalizedImage:
    """Decode, orient, convert and resize one image file into the canvas; raises SampleError."""
    return normalize_image_views(path, options)[0]


def normalize_image_views(path: Path, options: NormalizeOptions,
                          plan: GeometryPlan | None = None) -> list[NormalizedImage]:
    """One image file into every canvas `plan` asks for (one decode); raises SampleError."""
    im = _open_checked(path, options.max_pixels)
    with im:
        fmt = im.format
        orientation = _orientation(im)
        stored_w, stored_h = im.size
        orig_w, orig_h = (stored_h, stored_w) if orientation in _SWAPS_AXES else (stored_w, stored_h)
        geometries = plan(orig_w, orig_h) if plan else plan_geometries(orig_w, orig_h, options)
        out_fmt = "jpeg" if fmt in LOSSY_FORMATS else "png"
        orig_mode = im.mode
        if len(geometries) == 1 and (fmt == "PNG" if out_fmt == "png" else fmt == "JPEG") and im.mode == "RGB" \
                and (orig_w, orig_h) == (options.size, options.size) and orientation == 1:
            _load(im)  # already a canvas-sized file of the output format: keep its bytes
            return [NormalizedImage(path.read_bytes(), out_fmt, geometries[0], orig_w, orig_h, orig_mode, fmt,
                                    orientation)]
        scale = max(max(g.scale_x, g.scale_y) for g in geometries)
        if fmt == "JPEG" and scale < 1:
            # DCT-domain reduced decode: the result stays >= the size the canvas needs.
            im.draft(im.mode, (math.ceil(stored_w * scale), math.ceil(stored_h * scale)))
        _load(im)
        oriented = ImageOps.exif_transpose(im) if orientation != 1 else im
        work = to_8bit(oriented, options.alpha_background)
        out = []
        for geometry in geometries:
            canvas = place_on_canvas(work, geometry, orig_w, orig_h, None)
            if canvas.mode != "RGB":
                canvas = canvas.convert("RGB")
            out.append(NormalizedImage(_encode(canvas, out_fmt, options.jpeg_quality), out_fmt, geometry,
                                       orig_w, orig_h, orig_mode, fmt, orientation))
        return out


def load_mask_array(path: Path, expected_size: tuple[int, int], max_pixels: int, binary: bool = True) -> np.ndarray:
    """A source mask as a binary 0/255 array in original orientation; raises SampleError on mismatch.

    With `binary=False` the raw values come back (palette indices, gray levels) for callers that
    threshold or select values themselves.
    """
    im = _open_checked(path, max_pixels)
    with im:
        _load(im)
        oriented = ImageOps.exif_transpose(im) if _orientation(im) != 1 else im
        if oriented.size != expected_size:
            raise SampleError(
                f"mask size {oriented.size[0]}x{oriented.size[1]} does not match image size "
                f"{expected_size[0]}x{expected_size[1]}")
        # Palette masks carry class indices in the index plane: binarize the indices, not the colours.
        return binarize(np.asarray(oriented)) if binary else np.asarray(oriented)


def mask_to_canvas(mask: np.ndarray, geometry: Geometry) -> np.ndarray:
    """A binary original-size mask through the image's geometry (nearest neighbour), 0/255 uint8."""
    h, w = mask.shape
    canvas = place_on_canvas(Image.fromarray(mask, "L"), geometry, w, h, Image.Resampling.NEAREST)
    return binarize(np.asarray(canvas))


def class_mask_to_canvas(index: np.ndarray, geometry: Geometry) -> np.ndarray:
    """A class index mask (0 background, 1..255 classes) through the geometry, nearest neighbour:
    the same pixels as `mask_to_canvas` of its binary version, so the two always agree."""
    h, w = index.shape
    return np.asarray(place_on_canvas(Image.fromarray(index.astype(np.uint8), "L"), geometry, w, h,
                                      Image.Resampling.NEAREST)).copy()


def encode_mask(mask: np.ndarray) -> bytes:
    return _encode(Image.fromarray(mask, "L"), "png", 0)


def normalize_pixels(pixels: np.ndarray, options: NormalizeOptions, nearest: bool = False) -> NormalizedImage:
    """An image given as an array (a rendered wafer map, a decoded blob) into the canvas as PNG."""
    return normalize_pixel_views(pixels, options, nearest)[0]


def normalize_pixel_views(pixels: np.ndarray, options: NormalizeOptions, nearest: bool = False,
                          plan: GeometryPlan | None = None) -> list[NormalizedImage]:
    """An image given as an array into every canvas `plan` asks for, as PNG.

    `nearest` keeps hard edges (label-like renderings): no interpolation when resizing.
    """
    arr = np.ascontiguousarray(pixels)
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise SampleError(f"pixel array has shape {arr.shape}; expected (h, w) or (h, w, 3)")
    if arr.shape[0] * arr.shape[1] > options.max_pixels:
        raise SampleError(f"pixel array {arr.shape[1]}x{arr.shape[0]} exceeds --max-pixels {options.max_pixels}")
    im = Image.fromarray(arr)
    h, w = arr.shape[:2]
    geometries = plan(w, h) if plan else plan_geometries(w, h, options)
    work = to_8bit(im, options.alpha_background)
    out = []
    for geometry in geometries:
        canvas = place_on_canvas(work, geometry, w, h, Image.Resampling.NEAREST if nearest else None)
        if canvas.mode != "RGB":
            canvas = canvas.convert("RGB")
        out.append(NormalizedImage(_encode(canvas, "png", options.jpeg_quality), "png", geometry, w, h, im.mode,
                                   None, 1))
    return out
