"""Errors that name the fix: a --where field that no record has names the valid fields (and the closest one),
an unknown split lists the splits there are, a --where that matches nothing in a split says so."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from imdd_build.errors import RunError
from imdd_models.cli import app
from imdd_models.data import parse_where
from imdd_models.data.explain import no_records_message


def test_unknown_where_field_names_the_valid_fields():
    with pytest.raises(RunError) as info:
        parse_where("sorce=mtd")
    message = str(info.value)
    assert "no field 'sorce'" in message and "did you mean 'source'?" in message
    assert "defect_types" in message and "label" in message and "\n" not in message
    assert parse_where("attributes.severity=high,label!=normal,has_mask=True")  # dotted and shard-only fields


def test_unknown_split_lists_the_splits(demo_shards):
    assert no_records_message(str(demo_shards), "tset", None) == (
        f"{demo_shards}: no split 'tset'; did you mean 'test'? splits there: test, train; 'all' for every split")
    assert no_records_message(str(demo_shards), "test", "label=nothing") == (
        f"{demo_shards}: no records in split 'test' match --where label=nothing")


def test_evaluate_names_the_fix(demo_shards, tmp_path):
    (tmp_path / "predictions.jsonl").write_text("")
    runner = CliRunner()
    base = ["evaluate", "--predictions", str(tmp_path), "--data", str(demo_shards), "--json"]
    out = json.loads(runner.invoke(app, [*base, "--where", "sorce=demo"]).stdout.splitlines()[-1])
    assert "did you mean 'source'?" in out["error"]
    result = runner.invoke(app, [*base, "--split", "tset"])
    assert result.exit_code == 2
    assert "splits there: test, train" in json.loads(result.stdout.splitlines()[-1])["error"]
