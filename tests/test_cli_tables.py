"""`imdd-build` output for people: `sources --options`, `sources --roots` and `ingest all` print tables on stdout
without --json and the same content as JSON with it; unknown source and adapter ids get a did-you-mean."""

from __future__ import annotations

import yaml

from imdd_build.cli import app


def human(cli, *args, expect=0):
    result = cli.runner.invoke(app, ["--workspace", str(cli.workspace), *args], env={"COLUMNS": "200"})
    assert result.exit_code == expect, (result.stdout, result.stderr, result.exception)
    return result


def test_sources_options_is_a_table_on_stdout(cli):
    out = cli("sources", "--options", "folder")
    result = human(cli, "sources", "--options", "folder")
    assert "item(s)" not in result.stdout and "--opt" in result.stdout and "default" in result.stdout
    for option in out["options"]:  # the same content: every option with its type and help
        assert f"{option['name']}=..." in result.stdout and option["type"] in result.stdout
        assert option["help"][:30] in result.stdout
    assert "mask_threshold" not in result.stderr


def test_sources_roots_and_ingest_all_are_tables(cli, tmp_path):
    from imdd_build.sources.demo import generate_demo

    generate_demo(tmp_path / "demo")
    roots = tmp_path / "roots.yaml"
    roots.write_text(yaml.safe_dump({"demo": str(tmp_path / "demo"), "visa": "not/here"}))
    checks = cli("sources", "--roots", str(roots))["roots"]
    table = human(cli, "sources", "--roots", str(roots)).stdout
    assert "{" not in table and "'" not in table  # no Python dict dump
    for sid, check in checks.items():
        line = next(l for l in table.splitlines() if f" {sid} " in l)
        assert check["status"] in line
    assert "42 of 42 listed" in table and "missing: visa" in table

    out = cli("ingest", "all", "--roots", str(roots), "--workers", "1", expect=1)
    result = human(cli, "ingest", "all", "--roots", str(roots), "--workers", "1", expect=1)
    assert "{" not in result.stdout and "'" not in result.stdout
    demo = next(l for l in result.stdout.splitlines() if " demo " in l)
    assert " ok " in demo and f" {out['sources']['demo']['records']} " in demo
    assert "test 24" in demo and "train 18" in demo
    visa = next(l for l in result.stdout.splitlines() if " visa " in l)
    assert "failed" in visa
    assert any(" total " in l and " 42 " in l for l in result.stdout.splitlines())


def test_unknown_source_and_adapter_ids_get_did_you_mean(cli, tmp_path):
    error = cli("ingest", "mtdd", "--root", str(tmp_path), expect=2)["error"]
    assert "did you mean 'mtd'" in error and "generic adapters:" in error
    assert "did you mean 'folder'?" in cli("ingest", "foldr", "--root", str(tmp_path), expect=2)["error"]
    assert "did you mean 'folder'?" in cli("sources", "--options", "foldr", expect=2)["error"]
    roots = tmp_path / "roots.yaml"
    roots.write_text(yaml.safe_dump({"mvtek": str(tmp_path)}))
    out = cli("ingest", "all", "--roots", str(roots), "--workers", "1", expect=1)
    assert "did you mean 'mvtec'" in out["failed"]["mvtek"]
