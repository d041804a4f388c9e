"""One record as a flat row: the Hugging Face `datasets` features and the matching Arrow schema."""

from __future__ import annotations

import json

import pyarrow as pa

from ..record import Record


def _value(dtype: str) -> dict:
    return {"dtype": dtype, "_type": "Value"}


def _list(feature: dict) -> dict:
    return {"feature": feature, "_type": "List"}


_STRING_COLUMNS = ("source", "domain", "product", "split", "source_split", "label", "source_path",
                   "mask_source_path", "sha256", "orig_mode", "orig_format", "license", "caption_source",
                   "caption_status", "caption_meta", "parent", "resize_note")

# Column order of every shard: identity and the pixels first, then labels, then provenance.
FEATURES: dict = {
    "key": _value("string"),
    "image": {"_type": "Image"},
    "mask": {"_type": "Image"},
    "class_mask": {"_type": "Image"},  # 0 background, k = 1 + index into defect_types
    "caption": _value("string"),
    **{c: _value("string") for c in _STRING_COLUMNS[:6]},
    "defect_types": _list(_value("string")),
    "source_labels": _list(_value("string")),
    "defect_labels": _list({k: _value("string") for k in ("source_label", "type", "part")}),
    "split_origin": _value("string"),
    "source_attributes": _value("string"),  # JSON: source facts such as ELPV's defect probability
    "boxes": _list({k: _value("string" if k == "label" else "float32") for k in ("label", "x0", "y0", "x1", "y1")}),
    "has_mask": _value("bool"),
    "has_class_mask": _value("bool"),
    "attributes": {
        "location": _value("string"), "locations": _list(_value("string")), "area_fraction": _value("float32"),
        "regions": _value("int32"), "elongation": _value("float32"), "shape": _value("string"),
        "severity": _value("string"), "basis": _value("string"),
        "instances": _value("string"),  # JSON: defect type -> instance count
    },
    **{c: _value("string") for c in _STRING_COLUMNS[6:9]},
    "orig_width": _value("int32"),
    "orig_height": _value("int32"),
    **{c: _value("string") for c in _STRING_COLUMNS[9:12]},
    "exif_orientation": _value("int32"),
    "geometry": {
        "resize_mode": _value("string"), "size": _value("int32"), "scale_x": _value("float64"),
        "scale_y": _value("float64"), "offset_x": _value("float64"), "offset_y": _value("float64"),
        "crop_box": _list(_value("float64")), "content_box": _list(_value("int32")),
    },
    **{c: _value("string") for c in _STRING_COLUMNS[12:]},
}


def _arrow_type(feature: dict) -> pa.DataType:
    kind = feature.get("_type")
    if kind == "Value":
        return {"string": pa.string(), "bool": pa.bool_(), "int32": pa.int32(), "float32": pa.float32(),
                "float64": pa.float64()}[feature["dtype"]]
    if kind == "Image":
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    if kind == "List":
        return pa.list_(_arrow_type(feature["feature"]))
    return pa.struct([(name, _arrow_type(sub)) for name, sub in feature.items()])  # a nested dict of features


def arrow_schema() -> pa.Schema:
    """The Arrow schema with the `huggingface` metadata `datasets` reads features from."""
    fields = [pa.field(name, _arrow_type(feature)) for name, feature in FEATURES.items()]
    meta = {"huggingface": json.dumps({"info": {"features": FEATURES}})}
    return pa.schema(fields, metadata=meta)


def record_row(record: Record, image: bytes, image_ext: str, mask: bytes | None,
               class_mask: bytes | None = None) -> dict:
    """One record as a row of `arrow_schema()` (pixel bytes embedded)."""
    row = record.shard_metadata()
    name = record.key.rsplit('/', 1)[-1]
    row["image"] = {"bytes": image, "path": f"{name}.{image_ext}"}
    row["mask"] = {"bytes": mask, "path": f"{name}.mask.png"} if mask is not None else None
    row["class_mask"] = {"bytes": class_mask, "path": f"{name}.class_mask.png"} if class_mask is not None else None
    row["caption_meta"] = json.dumps(row["caption_meta"], sort_keys=True)
    row["source_attributes"] = json.dumps(row["source_attributes"], sort_keys=True)
    return {name: row.get(name) for name in FEATURES}
