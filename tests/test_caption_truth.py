"""Template captions say only what the record's facts support: the measured shape, the product the
registry or options name, proper casing, the original resolution, and the source's own term where
the taxonomy merges classes."""

from __future__ import annotations

import re

import numpy as np

from fixtures import noise_image, save
from imdd_build.caption.checks import check_caption
from imdd_build.caption.template import template_caption
from imdd_build.catalog import Catalog
from imdd_build.geometry import canvas_geometry
from imdd_build.maskops import mask_attributes
from imdd_build.record import DefectAttributes, Record

CONTENT = (0, 0, 512, 512)


def record(key="demo/x/test/0", source="demo", domain="metal_surface", product="metal_plate", defects=("scratch",),
           labels=None, size=(512, 512), attributes=None, **attrs) -> Record:
    return Record(key=key, source=source, domain=domain, product=product, split="test", source_split="test",
                  label="defective", defect_types=list(defects), source_labels=list(labels or defects),
                  source_path="x.png", sha256="0" * 64, orig_width=size[0], orig_height=size[1], orig_mode="L",
                  geometry=canvas_geometry(*size), image="a.png", image_format="png", license="CC0-1.0",
                  attributes=attributes or DefectAttributes(**attrs))


def captions(rec: Record, n: int = 24) -> list[str]:
    """The captions of `n` copies under different keys (phrasing variants are picked by the key)."""
    return [template_caption(rec.model_copy(update={"key": f"{rec.key}/{i}"})) for i in range(n)]


def test_a_broad_band_is_not_called_thin_or_crack_like():
    mask = np.zeros((512, 512), np.uint8)
    mask[200:297, :] = 255  # a 19% band of uneven surface across the part
    attrs = mask_attributes(mask, CONTENT)
    assert attrs.shape == "elongated" and 0.18 < attrs.area_fraction < 0.2
    for text in captions(record(defects=("uneven_surface",), attributes=attrs)):
        assert "thin" not in text and "line-like" not in text and not re.search(r"scratch|crack", text)
        assert "band" in text and "severe severity" not in text and "by area it counts as severe" in text


def test_a_thin_line_is_called_thin():
    mask = np.zeros((512, 512), np.uint8)
    mask[250:253, 40:470] = 255
    attrs = mask_attributes(mask, CONTENT)
    text = template_caption(record(attributes=attrs))
    assert "thin and elongated, a narrow line-like mark" in text


def test_no_centred_on_the_center():
    rec = record(location="center left", locations=["center left", "upper left", "lower left", "center"],
                 area_fraction=0.3, regions=1, elongation=1.5, shape="extensive", severity="severe", basis="mask")
    for text in captions(rec):
        assert "centred on the center" not in text and "mostly in the center left area" in text


def test_high_resolution_only_from_the_original_size():
    small = captions(record(size=(128, 128), location="center", locations=["center"], area_fraction=0.01,
                            regions=1, elongation=1.2, shape="compact", severity="moderate", basis="mask"), n=60)
    assert not any("high-resolution" in t.lower() for t in small)
    big = captions(record(size=(2048, 1536), location="center", locations=["center"], area_fraction=0.01,
                          regions=1, elongation=1.2, shape="compact", severity="moderate", basis="mask"), n=60)
    assert any("high-resolution" in t for t in big)


def test_proper_terms_keep_their_case():
    visa = captions(record(source="visa", domain="pcb", product="pcb1", defects=("missing_component",)))
    assert all("PCB1" in t and not re.search(r"\bpcb", t) for t in visa)
    deeppcb = captions(record(source="deeppcb", domain="bare_pcb", product="pcb", defects=("short_circuit",)))
    assert all("bare printed circuit board" in t and not re.search(r"\bpcb\b", t, re.I) for t in deeppcb)


def test_merged_source_classes_keep_a_true_term():
    ash = record(source="xsdd", domain="steel_strip", product="hot_rolled_steel_strip", defects=("oxide_scale",),
                 labels=("iron_sheet_ash",), location="center", locations=["center"], area_fraction=0.02,
                 regions=1, elongation=1.2, shape="compact", severity="moderate", basis="mask")
    for text in captions(ash):
        assert "iron sheet ash" in text and "oxide scale" not in text
        assert check_caption(ash, text).passed, check_caption(ash, text).reasons
    plate = ash.model_copy(update={"source_labels": ["oxide_scale_of_plate_system"]})
    assert all("oxide scale defect" in t for t in captions(plate))
    red = ash.model_copy(update={"defect_types": ["red_iron"], "source_labels": ["red_iron"]})
    assert all("red iron" in t.lower() for t in captions(red))


def test_folder_product_comes_from_options_or_domain_never_the_root_name(cli, workspace, tmp_path):
    root = tmp_path / "line7"
    for i in range(2):
        save(noise_image((32, 32), seed=i), root / "good" / f"{i}.png")
        save(noise_image((32, 32), seed=9 + i), root / "scratch" / f"{i}.png")
    cli("ingest", "folder", "--root", str(root), "--license", "MIT", "--domain", "metal_surface", "--workers", "1")
    cli("caption")
    with Catalog(workspace / "catalog.sqlite") as catalog:
        records = list(catalog.iter_records())
    assert records and all(r.product == "metal_surface" for r in records)
    assert all("line7" not in r.caption and "metal surface" in r.caption for r in records)
    cli("ingest", "folder", "--root", str(root), "--license", "MIT", "--domain", "metal_surface",
        "--source-id", "brackets", "--opt", "product=steel_bracket", "--workers", "1")
    cli("caption")
    with Catalog(workspace / "catalog.sqlite") as catalog:
        mine = [r for r in catalog.iter_records() if r.source == "brackets"]
    assert mine and all("steel bracket (metal surface)" in r.caption for r in mine)
