"""The one record type that flows through every stage, and the sample key rules."""

from __future__ import annotations

import json
import re
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

SPLITS = ("train", "validation", "test", "unlabeled")
LABELS = ("normal", "defective", "unknown")  # unknown: the source has no label (WM-811K unlabelled maps)
RESIZE_MODES = ("letterbox", "stretch", "crop", "tile")
# What ingest changed of the requested geometry for one sample (Record.resize_note).
RESIZE_NOTES = ("crop_shifted", "crop_fallback_letterbox", "tile_fallback_letterbox", "defect_kept")
CAPTION_SOURCES = ("template", "llm", "expert")
CAPTION_STATUSES = ("draft", "verified", "rejected")

KEY_RE = re.compile(r"^[a-z0-9_/-]+$")
_KEY_BAD_CHARS = re.compile(r"[^a-z0-9_/-]+")


def make_key(source: str, rel_path: str, tile: Optional[int] = None) -> str:
    """Stable sample key from source id + root-relative path: `[a-z0-9_/-]`, no dots, no extension."""
    path = rel_path.replace("\\", "/")
    stem, dot, _ext = path.rpartition(".")
    if dot and "/" not in _ext:
        path = stem
    parts = [_KEY_BAD_CHARS.sub("_", part.lower()).strip("_") or "_" for part in path.split("/") if part]
    key = "/".join([_KEY_BAD_CHARS.sub("_", source.lower()), *parts])
    return key if tile is None else tile_key(key, tile)


def tile_key(key: str, index: int) -> str:
    """The key of window `index` of a tiled image: `<key>/tNN`."""
    return f"{key}/t{index:02d}"


class Box(BaseModel):
    """An axis-aligned box in 512x512 pixel coordinates (x1, y1 exclusive)."""

    model_config = ConfigDict(frozen=True)
    label: str
    x0: float
    y0: float
    x1: float
    y1: float


class Geometry(BaseModel):
    """Maps original pixel coordinates to the 512x512 canvas: x512 = x * scale_x + offset_x.

    `crop_box` is the part of the original that is visible (x0, y0, x1, y1 in original pixels);
    `content_box` is where it lands on the canvas (the rest is letterbox padding).
    """

    resize_mode: Literal["letterbox", "stretch", "crop", "tile"]
    size: int = 512
    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float
    crop_box: tuple[float, float, float, float]
    content_box: tuple[int, int, int, int]

    def to_canvas(self, x: float, y: float) -> tuple[float, float]:
        return x * self.scale_x + self.offset_x, y * self.scale_y + self.offset_y

    def to_original(self, x: float, y: float) -> tuple[float, float]:
        return (x - self.offset_x) / self.scale_x, (y - self.offset_y) / self.scale_y


class DefectAttributes(BaseModel):
    """Facts derived from the normalized mask (or boxes) that captions and checks rely on."""

    location: Optional[str] = None  # 3x3 grid name of the defect centroid, e.g. "upper left"
    locations: list[str] = Field(default_factory=list)  # grid cells touched by defect pixels
    area_fraction: float = 0.0  # defect pixels / visible object pixels
    regions: int = 0  # connected components (8-connectivity)
    elongation: float = 0.0  # max ratio of principal axes over regions (1 = round)
    shape: Optional[str] = None  # "compact" | "elongated" | "scattered" | "extensive"
    severity: Optional[str] = None  # "minor" | "moderate" | "severe"
    basis: Optional[str] = None  # "mask" | "boxes" | None when nothing localizes the defect
    # defect type -> number of instances (connected regions of that class in class_mask, else boxes)
    instances: dict[str, int] = Field(default_factory=dict)


class DefectLabel(BaseModel):
    """One source label and what the taxonomy made of it (`type` None: the label maps to nothing)."""

    source_label: str
    type: Optional[str] = None
    part: Optional[str] = None


class Record(BaseModel):
    """One sample. The contract between ingest, caption, review, shard and imdd_models."""

    key: str
    source: str
    domain: str
    product: str
    split: Literal["train", "validation", "test", "unlabeled"]
    # official: the source's own split; seeded: our per-sample draw (no official split); seeded-group:
    # the draw of the record's near-duplicate group, decided by dedupe (`sample_split` keeps its own draw)
    split_origin: Literal["official", "seeded", "seeded-group"] = "official"
    sample_split: Optional[Literal["train", "validation", "test", "unlabeled"]] = None
    source_split: str
    label: Literal["normal", "defective", "unknown"]
    defect_types: list[str] = Field(default_factory=list)  # canonical taxonomy names
    source_labels: list[str] = Field(default_factory=list)  # the source's own spellings
    defect_labels: list[DefectLabel] = Field(default_factory=list)
    source_attributes: dict[str, Any] = Field(default_factory=dict)  # e.g. ELPV defect probability
    source_path: str
    mask_source_path: Optional[str] = None
    sha256: str  # of the original image file's bytes
    orig_width: int
    orig_height: int
    orig_mode: str
    orig_format: Optional[str] = None
    exif_orientation: int = 1
    geometry: Geometry
    image: str  # store reference of the normalized 512x512 RGB image
    image_format: Literal["png", "jpeg"]
    mask: Optional[str] = None  # store reference of the normalized 512x512 L mask (0/255)
    # store reference of the 512x512 L class index mask: 0 background, k = 1 + index into defect_types;
    # non-zero exactly where `mask` is; None where the source does not say which pixel is which type
    class_mask: Optional[str] = None
    parent: Optional[str] = None  # tile records: the key of the image they were cut from
    # crop_shifted | crop_fallback_letterbox | tile_fallback_letterbox | defect_kept (see views.py)
    resize_note: Optional[str] = None
    boxes: list[Box] = Field(default_factory=list)
    attributes: DefectAttributes = Field(default_factory=DefectAttributes)
    license: str
    caption: Optional[str] = None
    caption_source: Optional[Literal["template", "llm", "expert"]] = None
    caption_status: Optional[Literal["draft", "verified", "rejected"]] = None
    caption_meta: dict[str, Any] = Field(default_factory=dict)  # provenance: generator, model, prompt, checks

    @field_validator("key")
    @classmethod
    def _key_is_clean(cls, value: str) -> str:
        if not KEY_RE.match(value):
            raise ValueError(f"key {value!r} must match [a-z0-9_/-]+ (no dots)")
        return value

    def shard_metadata(self) -> dict:
        """Everything but the pixel references: the `.json` of a WebDataset sample."""
        data = self.model_dump(mode="json", exclude={"image", "mask", "class_mask"})
        if data["sample_split"] is None:  # only a regrouped record says it: other shards keep their bytes
            del data["sample_split"]
        data["has_mask"] = self.mask is not None
        data["has_class_mask"] = self.class_mask is not None
        # A JSON string, as in Parquet: its keys vary by record, and `datasets` infers a tar's JSON
        # schema from its first samples (a key first seen later would be dropped).
        data["attributes"]["instances"] = json.dumps(data["attributes"]["instances"], sort_keys=True)
        return data


class Quarantined(BaseModel):
    """A sample-level failure: which file, why, and at which stage."""

    source: str
    path: str
    reason: str
    stage: str = "ingest"
