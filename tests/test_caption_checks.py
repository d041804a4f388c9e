import itertools

import pytest

from imdd_build.caption.checks import (
    check_caption,
    check_record,
    check_workspace,
    length_range,
    stated_locations,
)
from imdd_build.caption.template import template_caption
from imdd_build.catalog import Catalog
from imdd_build.geometry import canvas_geometry
from imdd_build.record import DefectAttributes, Record


def _record(key="demo/x/test/scratch/000", label="defective", defects=("scratch",), source="demo", **attrs):
    return Record(key=key, source=source, domain="metal_surface", product="metal_plate", split="test",
                  source_split="test", label=label, defect_types=list(defects) if label == "defective" else [],
                  source_path="x.png", sha256="0" * 64, orig_width=100, orig_height=100, orig_mode="L",
                  geometry=canvas_geometry(100, 100), image="a.png", image_format="png", license="CC0-1.0",
                  attributes=DefectAttributes(**attrs))


LOCALIZED = dict(location="upper left", locations=["upper left", "upper center"], area_fraction=0.01, regions=1,
                 elongation=9, shape="elongated", severity="minor", basis="mask")
FILLER = " The remaining surface of the plate looks intact, with a uniform color, texture and finish across the part."


def test_length_range_comes_from_the_style_guide():
    assert length_range() == (30, 60)


@pytest.mark.parametrize("label,defects,shape,locs", list(itertools.product(
    ["normal", "defective"], [("scratch",), ("broken_large",), ("combined",), ("bad",), ("crack", "hole"),
                              ("cut_inner_insulation", "poke_insulation"), ("color",)],
    ["compact", "elongated", "scattered", "extensive", None], [1, 5])))
def test_template_captions_pass_every_check(label, defects, shape, locs):
    cells = ["upper left", "center", "lower right", "upper center", "center left"][:locs]
    r = _record(label=label, defects=defects, source="mvtec", location=cells[0] if shape else None,
                locations=cells if shape else [], area_fraction=0.02, regions=2, elongation=5, shape=shape,
                severity="moderate", basis="mask" if shape else None)
    result = check_caption(r, template_caption(r))
    assert result.passed, (result.reasons, template_caption(r))


def test_defect_named_by_type_name_or_synonym():
    r = _record(**LOCALIZED)
    ok = ("A close-up inspection image of a metal plate with fine scratches in the upper left area, a thin "
          "elongated mark covering about one percent of the visible surface, a minor flaw." + FILLER)
    assert check_caption(r, ok).passed
    syn = ok.replace("fine scratches", "a light scrape")
    assert check_caption(r, syn).passed
    wrong = ok.replace("fine scratches", "a shallow dent")
    res = check_caption(r, wrong)
    assert not res.results["names_defect"] and "scratch" in res.reasons[0]


def test_source_label_resolved_through_the_taxonomy():
    r = _record(source="mvtec", defects=("broken_large",), **LOCALIZED)
    text = ("An inspection image of a metal plate with a large broken edge in the upper left area covering a "
            "small part of the visible surface, a minor elongated fracture." + FILLER)
    assert check_caption(r, text).passed


def test_normal_image_may_not_claim_a_defect():
    r = _record(label="normal")
    ok = ("A close-up inspection image of a metal plate with no visible defects. The surface is intact and shows "
          "no scratches, cracks or stains, with a uniform texture. It is a defect-free reference sample for "
          "this product line.")
    assert check_caption(r, ok).passed
    bad = ok.replace("It is a defect-free reference sample", "A small crack runs across the middle of the sample")
    res = check_caption(r, bad)
    assert not res.results["no_defect_on_normal"] and "crack" in " ".join(res.reasons)
    no_statement = ("A close-up inspection image of a metal plate under bright, even light. The brushed surface "
                    "shows a regular grain, uniform color and a clean finish from edge to edge, as expected for "
                    "this product.")
    assert not check_caption(r, no_statement).results["no_defect_on_normal"]
    assert not check_caption(r, ok, {"defect_terms": ["scratch"]}).passed


def test_location_must_agree_with_the_mask():
    r = _record(**LOCALIZED)
    base = ("A close-up inspection image of a metal plate showing a scratch defect in the {} area, thin and "
            "elongated, covering about one percent of the surface, a minor flaw." + FILLER)
    assert check_caption(r, base.format("top left")).passed
    assert check_caption(r, base.format("upper center")).passed
    res = check_caption(r, base.format("lower right"))
    assert not res.results["location_agrees"] and "lower right" in res.reasons[0]
    assert not check_caption(r, base.format("upper left"), {"location": "bottom right"}).passed


def test_unlocalized_defect_must_not_get_a_location():
    r = _record()
    text = ("A close-up inspection image of a metal plate showing a scratch defect near the lower left corner of "
            "the part. The rest of the plate looks intact, with a uniform color, texture and finish overall.")
    res = check_caption(r, text)
    assert not res.results["location_agrees"] and "not annotated" in res.reasons[0]


def test_length_markup_and_hedging():
    r = _record(**LOCALIZED)
    assert not check_caption(r, "A scratch in the upper left.").results["length"]
    good = ("A close-up inspection image of a metal plate showing a scratch defect in the upper left area, thin "
            "and elongated, covering about one percent of the surface, a minor flaw." + FILLER)
    for bad in ("**" + good + "**", "Caption: " + good, good + " It seems to be minor.", '"' + good + '"',
                "- " + good, good + "\n\nI think so."):
        res = check_caption(r, bad)
        assert not res.results["no_markup"], bad
    assert not check_caption(r, "").passed


def test_stated_severity_and_defects_are_checked():
    r = _record(**LOCALIZED)
    text = ("A close-up inspection image of a metal plate showing a scratch defect in the upper left area, thin "
            "and elongated, covering about one percent of the surface, a minor flaw." + FILLER)
    assert check_caption(r, text, {"defect_terms": ["scratches"], "location": "upper left", "severity": "minor"}).passed
    res = check_caption(r, text, {"defect_terms": ["scratch", "rust"], "severity": "severe"})
    assert not res.results["stated_defects_match_labels"] and not res.results["severity_agrees"]


def test_stated_locations_parser():
    assert stated_locations("in the top-left corner and the centre") == ["upper left", "center"]
    assert stated_locations("towards the middle right, not the bottom center") == ["center right", "lower center"]


def test_check_record_and_workspace_cover_template_and_expert(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite")
    good = _record(key="demo/a", **LOCALIZED)
    good = good.model_copy(update={"caption": template_caption(good), "caption_source": "template",
                                   "caption_status": "draft", "caption_meta": {"generator": "template"}})
    expert = _record(key="demo/b", **LOCALIZED).model_copy(update={
        "caption": "Rust.", "caption_source": "expert", "caption_status": "verified", "caption_meta": {"by": "ann"}})
    catalog.upsert([(good, "f1"), (expert, "f2")])
    assert check_record(good).passed and not check_record(expert).passed
    summary = check_workspace(catalog)
    assert summary == {"checked": 2, "check_failed": 1}
    b = catalog.get("demo/b")
    assert b.caption == "Rust." and b.caption_status == "verified" and b.caption_meta["by"] == "ann"
    assert b.caption_meta["review_priority"] == 0 and b.caption_meta["checks"]["passed"] is False
    assert catalog.get("demo/a").caption_meta["checks"]["passed"] is True
    before = catalog.db.execute("SELECT updated_at FROM records ORDER BY key").fetchall()
    check_workspace(catalog)  # idempotent: nothing rewritten
    assert catalog.db.execute("SELECT updated_at FROM records ORDER BY key").fetchall() == before
