"""One leakage rule in `dedupe`, `shard` and `push-to-hub`: a duplicate group that spans an evaluation
split (validation or test) and any other split is leakage; by default the copies in the group's most
held-out split are kept (test, else validation) and the others are left out; `--leakage keep` keeps all."""

import datasets
import pytest

from conftest import Cli
from fixtures import noise_image, save

GENERIC = ("--license", "CC-BY-4.0", "--domain", "pcb", "--source-id", "line", "--workers", "1")
# (relative path, content seed): equal seeds are pixel-identical copies
FILES = [
    ("test/good/a.png", 1), ("val/good/a.png", 1),  # validation/test: the validation copy goes
    ("train/good/b.png", 2), ("test/scratch/b.png", 2),  # train/test: the train copy goes
    ("train/good/c.png", 3), ("val/good/c.png", 3),  # train/validation: the train copy goes
    ("train/good/e.png", 5), ("val/good/e.png", 5), ("test/good/e.png", 5),  # all three: only test stays
    ("test/good/d.png", 4), ("test/good/d2.png", 4),  # one split: a group, not leakage
    ("train/good/f.png", 10), ("val/good/g.png", 11), ("test/good/h.png", 12), ("train/scratch/i.png", 13),
]
LEAK_DROPS = {"line/val/good/a", "line/train/good/b", "line/train/good/c", "line/train/good/e", "line/val/good/e"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("leakage")
    for rel, seed in FILES:
        save(noise_image((64, 64), seed=seed), base / "src" / rel)
    cli = Cli(base / "ws")
    cli("ingest", "folder", "--root", str(base / "src"), *GENERIC)
    cli("caption")
    return cli, base


def _groups(out):
    return {frozenset(m["key"] for m in g["members"]): g for g in out["groups"]}


def test_dedupe_flags_every_evaluation_split_overlap(built):
    cli, _ = built
    out = cli("dedupe")
    groups = _groups(out)
    assert len(groups) == 5 and out["leakage_groups"] == 4 and out["images"] == len(FILES)
    val_test = groups[frozenset({"line/test/good/a", "line/val/good/a"})]
    assert val_test["leakage"] and val_test["dropped"] == ["line/val/good/a"]
    train_val = groups[frozenset({"line/train/good/c", "line/val/good/c"})]
    assert train_val["leakage"] and train_val["dropped"] == ["line/train/good/c"]
    three = groups[frozenset({"line/train/good/e", "line/val/good/e", "line/test/good/e"})]
    assert three["dropped"] == ["line/train/good/e", "line/val/good/e"]
    same_split = groups[frozenset({"line/test/good/d", "line/test/good/d2"})]
    assert not same_split["leakage"] and same_split["dropped"] == []
    assert set(out["dropped"]) == LEAK_DROPS
    kept = cli("dedupe", "--leakage", "keep", "--workers", "2")
    assert kept["leakage_groups"] == 4 and kept["dropped"] == []
    assert [g["members"] for g in kept["groups"]] == [g["members"] for g in out["groups"]]


def test_shard_applies_the_policy_by_default_and_keeps_on_request(built):
    cli, base = built
    out = cli("shard", "--out", str(base / "shards"), "--format", "parquet")
    assert set(out["dropped_for_leakage"]) == LEAK_DROPS and out["excluded_keys"] == len(LEAK_DROPS)
    assert out["dedupe"]["leakage_groups"] == 4 and out["dedupe"]["leakage_policy"] == "drop-train"
    assert "leakage: 4 duplicate group(s)" in cli.last.stderr and "5 copies left out" in cli.last.stderr
    ds = datasets.load_dataset(str(base / "shards"))
    keys = {k for split in ds for k in ds[split]["key"]}
    assert keys == {f"line/{rel.rsplit('.', 1)[0]}" for rel, _ in FILES} - LEAK_DROPS
    assert out["splits"] == {"train": 2, "validation": 2, "test": 6}
    kept = cli("shard", "--out", str(base / "shards-all"), "--format", "parquet", "--leakage", "keep")
    assert kept["dropped_for_leakage"] == [] and sum(kept["splits"].values()) == len(FILES)
    assert "kept (--leakage keep)" in cli.last.stderr
    assert "drop-train or keep" in cli("shard", "--out", str(base / "x"), "--leakage", "maybe", expect=2)["error"]


def test_push_to_hub_drops_the_same_copies(built):
    cli, base = built
    out = cli("push-to-hub", "me/line", "--dry-run", str(base / "repo"), "--private")
    assert set(out["dropped_for_leakage"]) == LEAK_DROPS
    assert out["configs"]["default"] == {"train": 2, "validation": 2, "test": 6}
    card = (base / "repo" / "README.md").read_text()
    assert "most held-out split (test, else validation)" in card and "5 image(s) are not in this repository" in card
