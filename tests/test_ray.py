"""The Ray backend (`ingest --executor ray`) against a local Ray instance started here: the same
catalog, content store and byte-identical shards as the local process pool on the same inputs."""

import sqlite3
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from conftest import Cli  # noqa: E402
from fixtures import blob_mask, noise_image, save, write_mvtec  # noqa: E402


def _source(root: Path) -> None:
    write_mvtec(root)  # PNG, gray, letterboxed, masks and every kind of bad file
    for i in range(12):  # plus JPEGs large enough for the reduced-scale decode
        cls = "good" if i % 3 else "crack"
        path = root / "plate" / ("train" if cls == "good" else "test") / cls / f"{i:03d}.jpg"
        save(noise_image((1100, 700), seed=100 + i), path)
        if cls != "good":
            save(blob_mask((1100, 700), (100, 100, 400, 300)), root / "plate/ground_truth" / cls / f"{i:03d}_mask.png")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _records(ws: Path) -> list:
    con = sqlite3.connect(ws / "catalog.sqlite")
    try:
        return con.execute("SELECT key, source, split, label, caption_status, fingerprint, data FROM records "
                           "ORDER BY key").fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _build(ws: Path, root: Path, out: Path, *executor: str) -> dict:
    cli = Cli(ws)
    summary = cli("ingest", "mvtec", "--root", str(root), "--workers", "2", *executor)
    cli("caption")
    cli("shard", "--out", str(out), "--max-shard-size", "300KB")
    return summary


def test_ray_executor_gives_byte_identical_catalog_store_and_shards(local_ray, tmp_path, monkeypatch):
    from imdd_build import ray_executor

    tasks = []
    make_remote = ray_executor._run_chunk_remote

    class Spy:  # counts the Ray tasks the ingest submits
        def __init__(self, remote):
            self.inner = remote

        def remote(self, *args):
            tasks.append(len(args[1]))
            return self.inner.remote(*args)

    monkeypatch.setattr(ray_executor, "_run_chunk_remote", lambda r: Spy(make_remote(r)))
    root = tmp_path / "src"
    _source(root)
    local = _build(tmp_path / "ws-local", root, tmp_path / "out-local")
    assert not tasks
    on_ray = _build(tmp_path / "ws-ray", root, tmp_path / "out-ray", "--executor", "ray")
    assert len(tasks) > 1 and sum(tasks) == 21 + 3  # every sample went through a Ray task (bad ones too)
    assert on_ray == {**local, "root": on_ray["root"]} and local["records"] == 21 and local["quarantined"] == 3
    assert _records(tmp_path / "ws-ray") == _records(tmp_path / "ws-local")
    assert _files(tmp_path / "ws-ray/store") == _files(tmp_path / "ws-local/store")
    shards_local, shards_ray = _files(tmp_path / "out-local"), _files(tmp_path / "out-ray")
    assert any(name.endswith(".tar") for name in shards_local) and any(name.endswith(".parquet") for name in shards_local)
    assert len([n for n in shards_local if n.endswith(".tar")]) > 2  # several shards, so their order matters too
    assert shards_ray == shards_local


def test_ray_rerun_skips_unchanged_samples(local_ray, tmp_path):
    root = tmp_path / "src"
    _source(root)
    cli = Cli(tmp_path / "ws")
    cli("ingest", "mvtec", "--root", str(root), "--executor", "ray")
    again = cli("ingest", "mvtec", "--root", str(root), "--executor", "ray")
    assert again["written"] == 0 and again["unchanged"] == again["records"] == 21


def test_ray_address_needs_the_ray_executor(tmp_path):
    result = Cli(tmp_path / "ws")
    out = result("ingest", "mvtec", "--root", str(tmp_path), "--ray-address", "ray://nowhere:10001", expect=2)
    assert "--executor ray" in out["error"]
