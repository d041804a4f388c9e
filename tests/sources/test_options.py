"""Typed adapter options: typos and bad values are refused in one line naming the field and the choices."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fixtures import noise_image, save, write_mvtec
from imdd_build.sources import ADAPTERS
from imdd_build.sourcekit.options import AdapterOptions, describe, option_names


def folder_root(tmp_path: Path) -> Path:
    root = tmp_path / "line7"
    for i in range(2):
        save(noise_image((16, 16), seed=i), root / "good" / f"{i}.png")
        save(noise_image((16, 16), seed=10 + i), root / "scratch" / f"{i}.png")
    return root


def one_line_error(cli) -> str:
    text = " ".join(cli.last.stderr.split())
    assert cli.last.stderr.strip().count("\n") == 0 and text.startswith("error:"), cli.last.stderr
    assert "errors.pydantic.dev" not in cli.last.stderr and "errors.pydantic.dev" not in cli.last.stdout
    return text


def test_unknown_opt_key_is_refused_with_the_valid_ones(cli, tmp_path):
    out = cli("ingest", "folder", "--root", str(folder_root(tmp_path)), "--license", "MIT",
              "--opt", "mask_treshold=5", expect=2)
    assert "unknown option 'mask_treshold' (did you mean 'mask_threshold'?) for adapter folder" in out["error"]
    for name in ("group", "mask_threshold", "masks", "normal", "product", "split_level"):
        assert name in out["error"]
    one_line_error(cli)
    assert not (cli.workspace / "store").exists() or not any((cli.workspace / "store").rglob("*.*"))


def test_bad_option_value_names_the_field_and_the_choices(cli, tmp_path):
    root = folder_root(tmp_path)
    out = cli("ingest", "folder", "--root", str(root), "--license", "MIT", "--opt", "mask_threshold=300", expect=2)
    assert "option mask_threshold" in out["error"] and "255" in out["error"]
    out = cli("ingest", "coco", "--root", str(root), "--license", "MIT", "--opt", "crowd=sometimes", expect=2)
    assert "option crowd: Input should be 'include' or 'ignore'" in out["error"]
    one_line_error(cli)


def test_options_of_a_registered_source_are_checked_too(cli, tmp_path):
    write_mvtec(tmp_path / "m")
    out = cli("ingest", "mvtec", "--root", str(tmp_path / "m"), "--opt", "categorie=bottle", expect=2)
    assert "unknown option 'categorie' (did you mean 'categories'?) for adapter mvtec" in out["error"]
    out = cli("ingest", "mvtec", "--root", str(tmp_path / "m"), "--category", "bottle", "--workers", "1")
    assert out["records"] > 0
    out = cli("ingest", "crackforest", "--root", str(tmp_path / "m"), "--category", "x", expect=2)
    assert "unknown option 'categories' (--category) for adapter crackforest; valid options: none" in out["error"]


def test_unknown_domain_and_redistribution_are_errors(cli, tmp_path):
    root = folder_root(tmp_path)
    out = cli("ingest", "folder", "--root", str(root), "--license", "MIT", "--domain", "fooo", expect=2)
    assert "domain 'fooo' is not in the taxonomy" in out["error"] and "metal_surface" in out["error"]
    one_line_error(cli)
    out = cli("ingest", "folder", "--root", str(root), "--license", "MIT", "--redistribution", "maybe", expect=2)
    assert out["error"] == ("redistribution: must be one of allowed, noncommercial, research_only, forbidden, "
                            "unknown, not 'maybe'")
    one_line_error(cli)
    write_mvtec(tmp_path / "m")
    out = cli("ingest", "mvtec", "--root", str(tmp_path / "m"), "--redistribution", "maybe", expect=2)
    assert out["error"].startswith("redistribution: must be one of")


def test_roots_file_typos_fail_that_source_with_the_reason(cli, tmp_path):
    root = folder_root(tmp_path)
    roots = tmp_path / "roots.yaml"
    roots.write_text(yaml.safe_dump({
        "mine": {"adapter": "folder", "root": str(root), "license": "MIT", "redistribution": "sometimes"},
        "other": {"adapter": "folder", "root": str(root), "license": "MIT", "domain": "metal_surface",
                  "options": {"product": "bracket", "mask_treshold": 3}},
        "good": {"adapter": "folder", "root": str(root), "license": "MIT", "domain": "metal_surface"},
    }))
    out = cli("ingest", "all", "--roots", str(roots), "--workers", "1", expect=1)
    assert out["failed"]["mine"].startswith("redistribution: must be one of")
    assert "unknown option 'mask_treshold'" in out["failed"]["other"]
    assert out["sources"]["good"]["records"] == 4
    checked = cli("sources", "--roots", str(roots))["roots"]
    assert checked["mine"]["status"] == "error" and "redistribution" in checked["mine"]["error"]
    assert checked["other"]["status"] == "error" and "mask_treshold" in checked["other"]["error"]


def test_sources_options_prints_each_adapters_options(cli):
    out = cli("sources", "--options", "folder")
    names = {o["name"]: o for o in out["options"]}
    assert set(names) == {"group", "mask_threshold", "masks", "normal", "product", "split_level"}
    assert all(o["help"] for o in out["options"]) and names["mask_threshold"]["type"] == "int"
    real = {o["name"]: o for o in cli("sources", "--options", "realiad")["options"]}  # a source id works too
    assert real["json"]["default"] == "realiad_jsons" and real["resolution"]["type"] == "256|512|1024|raw"
    assert cli("sources", "--options", "crackforest")["options"] == []
    assert "no such source or adapter" in cli("sources", "--options", "nope", expect=2)["error"]


@pytest.mark.parametrize("adapter_id", sorted(ADAPTERS))
def test_every_adapter_declares_typed_options_with_help(adapter_id):
    model = ADAPTERS[adapter_id].Options
    assert issubclass(model, AdapterOptions) and model.model_config.get("extra") == "forbid"
    assert len(option_names(model)) == len(describe(model))
    assert all(row["help"] for row in describe(model)), adapter_id


def test_values_are_typed_numbers_taken_as_text_where_text_is_wanted():
    from imdd_build.sourcekit.options import validate_options

    folder = ADAPTERS["folder"].Options
    assert validate_options("folder", folder, {"product": 7, "split_level": "auto", "normal": "ok,good"}) == \
        {"product": "7", "normal": ["ok", "good"]}
    assert validate_options("folder", folder, {"split_level": "no", "mask_threshold": "12"}) == \
        {"split_level": False, "mask_threshold": 12}
    assert validate_options("eyecandies", ADAPTERS["eyecandies"].Options, {"image": 0}) == {"image": "0"}
