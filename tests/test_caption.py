import itertools

import pytest

from imdd_build.caption.template import MAX_WORDS, MIN_WORDS, defect_phrase, template_caption, word_count
from imdd_build.geometry import canvas_geometry
from imdd_build.record import DefectAttributes, Record


def _record(key="demo/x/test/scratch/000", label="defective", defects=("scratch",), **attrs):
    return Record(key=key, source="demo", domain="metal_surface", product="metal_plate", split="test",
                  source_split="test", label=label, defect_types=list(defects) if label == "defective" else [],
                  source_path="x.png", sha256="0" * 64, orig_width=100, orig_height=100, orig_mode="L",
                  geometry=canvas_geometry(100, 100), image="a.png", image_format="png", license="CC0-1.0",
                  attributes=DefectAttributes(**attrs))


def test_defect_phrase():
    assert defect_phrase(["scratch"]) == "a scratch defect"
    assert defect_phrase(["broken_large"]) == "a broken large defect"
    assert defect_phrase(["bad"]) == "an unspecified defect"
    assert defect_phrase(["combined"]) == "several combined defects"
    assert defect_phrase(["Scratch", "bent", "scratch"]) == "scratch and bent defects"


def test_defective_caption_states_defect_location_and_size():
    text = template_caption(_record(location="upper left", locations=["upper left"], area_fraction=0.002,
                                    regions=1, elongation=20, shape="elongated", severity="minor", basis="mask"))
    assert "scratch defect" in text and "upper left" in text
    assert "less than 0.5%" in text and "thin and elongated, a narrow line-like mark" in text
    assert "by area it counts as minor" in text
    assert "metal plate (metal surface)" in text


def test_normal_caption_is_defect_free():
    text = template_caption(_record(label="normal"))
    assert "no visible defects" in text and "scratch defect" not in text


def test_unlocalized_defect_says_so():
    text = template_caption(_record())
    assert "not annotated" in text


def test_deterministic_and_varied():
    r = _record(location="center", locations=["center"], area_fraction=0.03, regions=2, elongation=1.5,
                shape="compact", severity="moderate", basis="mask")
    assert template_caption(r) == template_caption(r)
    variants = {template_caption(r.model_copy(update={"key": f"demo/x/{i}"})) for i in range(30)}
    assert len(variants) > 5


@pytest.mark.parametrize("label,shape,regions,locs", list(itertools.product(
    ["normal", "defective"], ["compact", "elongated", "scattered", "extensive", None], [1, 7], [1, 5])))
def test_word_count_in_style_range(label, shape, regions, locs):
    cells = ["upper left", "center", "lower right", "upper center", "center left"][:locs]
    r = _record(label=label, defects=("cut_inner_insulation", "poke_insulation"), location=cells[0] if shape else None,
                locations=cells if shape else [], area_fraction=0.3, regions=regions, elongation=5, shape=shape,
                severity="severe", basis="mask" if shape else None)
    assert MIN_WORDS <= word_count(template_caption(r)) <= MAX_WORDS


def test_unlabelled_caption_claims_neither_defect_nor_its_absence():
    text = template_caption(_record(key="demo/x/u/000", label="unknown"))
    assert MIN_WORDS <= word_count(text) <= MAX_WORDS
    assert "no visible defects" not in text and "defect" in text and "not stated" in text


def test_canonical_types_are_spoken_by_their_taxonomy_names():
    assert defect_phrase(["edge_localized_cluster"]) == "an edge-localized cluster defect"
    assert defect_phrase(["multiple_defects"]) == "several combined defects"
    assert defect_phrase(["anomaly"]) == "an unspecified defect"


def test_many_defect_types_still_fit_the_length_range():
    many = ("open_circuit", "short_circuit", "mouse_bite", "spur", "spurious_copper", "pin_hole")
    rec = _record(defects=many, location="center", locations=["upper left", "upper right", "center", "center right",
                  "lower left", "lower right"], area_fraction=0.035, regions=10, elongation=2, shape="scattered",
                  severity="moderate", basis="boxes")
    text = template_caption(rec)
    assert MIN_WORDS <= word_count(text) <= MAX_WORDS, text
    assert "pin hole" in text and "moderate" in text and "centred on the center" not in text
