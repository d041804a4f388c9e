"""Class split files and the few-shot sampler shared by train-seg and evaluate."""

from __future__ import annotations

import json
import random

import pytest

from imdd_models.protocol import ClassSplit, ProtocolError, load_class_split, parse_class_list, sample_shots


def pool(n: int, seed: int = 1) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    classes = ["scratch", "crack", "hole", "stain"]
    out = []
    for i in range(n):
        k = rng.choice([0, 1, 1, 1, 2])
        out.append((f"src/item{i:04d}", rng.sample(classes, k)))
    return out


def test_exactly_k_per_class_and_all_when_short():
    records = pool(300)
    sel = sample_shots(records, shots=20, seed=7)
    have = {c: sum(c in cs for _, cs in records) for c in ["scratch", "crack", "hole", "stain"]}
    assert all(v > 20 for v in have.values())
    assert sel.per_class == {c: 20 for c in have} and sel.short == {}
    # every class has at least K selected records that carry it (exact by assignment, more via co-occurrence)
    chosen = dict(records)
    for c in have:
        assert sum(c in chosen[k] for k in sel.keys) >= 20
    # a class with fewer than K samples uses all it has and is reported
    few = [("a/1", ["rare"]), ("a/2", ["rare"]), *records]
    sel2 = sample_shots(few, shots=20, seed=7)
    assert sel2.per_class["rare"] == 2 and sel2.short == {"rare": 2}
    assert {"a/1", "a/2"} <= set(sel2.keys)


def test_deterministic_and_order_independent():
    records = pool(200)
    a = sample_shots(records, shots=10, seed=3)
    shuffled = records[:]
    random.Random(99).shuffle(shuffled)
    b = sample_shots(shuffled, shots=10, seed=3)
    assert a.keys == b.keys and a.per_class == b.per_class
    c = sample_shots(records, shots=10, seed=4)
    assert c.keys != a.keys  # the seed matters


def test_restricted_to_base_classes():
    records = pool(200)
    sel = sample_shots(records, shots=5, seed=0, classes=["scratch", "missing"])
    chosen = dict(records)
    assert all("scratch" in chosen[k] for k in sel.keys)
    assert sel.per_class == {"scratch": 5, "missing": 0} and sel.short == {"missing": 0}


def test_bad_requests():
    with pytest.raises(ProtocolError, match="--shots"):
        sample_shots([("a", ["x"])], shots=0)
    with pytest.raises(ProtocolError, match="duplicate"):
        sample_shots([("a", ["x"]), ("a", ["y"])], shots=1)


def test_class_split_file(tmp_path):
    p = tmp_path / "split.yaml"
    p.write_text("base: [scratch, crack]\nnovel: [hole]\n")
    split = load_class_split(p)
    assert split == ClassSplit(base=("scratch", "crack"), novel=("hole",))
    assert split.is_seen("crack") and not split.is_seen("hole")
    j = tmp_path / "split.json"
    j.write_text(json.dumps(split.to_dict()))
    assert load_class_split(j) == split


@pytest.mark.parametrize(
    "text, message",
    [
        ("base: [a]\nnovle: [b]\n", "unknown field"),
        ("base: a\n", "'base' must be a list"),
        ("novel: [b]\n", "'base' is empty"),
        ("base: [a, b]\nnovel: [b]\n", "both base and novel"),
        ("- a\n", "expected a mapping"),
        ("base: [a\n", "not valid YAML"),
    ],
)
def test_class_split_errors_name_the_file(tmp_path, text, message):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ProtocolError, match=message) as err:
        load_class_split(p)
    assert str(p) in str(err.value)
    with pytest.raises(ProtocolError, match="not found"):
        load_class_split(tmp_path / "nope.yaml")


def test_parse_class_list():
    assert parse_class_list(" scratch, crack,,scratch ,hole") == ("scratch", "crack", "hole")
