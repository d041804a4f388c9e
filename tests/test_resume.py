"""A run killed with SIGKILL at any point and re-run ends with exactly the records of an uninterrupted run."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path


from fixtures import blob_mask, noise_image, save

N_IMAGES = 48


def _make_source(root: Path) -> None:
    for i in range(N_IMAGES):
        cls = "good" if i % 3 else "dent"
        split = "train" if cls == "good" and i % 2 else "test"
        save(noise_image((700, 500), seed=i), root / "plate" / split / cls / f"{i:03d}.png")
        if cls != "good":
            save(blob_mask((700, 500), (100, 100, 300, 250)), root / "plate/ground_truth" / cls / f"{i:03d}_mask.png")
    (root / "plate/test/dent/999.png").write_bytes(b"broken")


def _ingest_cmd(ws: Path, root: Path) -> list[str]:
    return [sys.executable, "-m", "imdd_build", "--workspace", str(ws), "ingest", "mvtec", "--root", str(root),
            "--workers", "1", "--commit-every", "3", "--json"]


def _count(db: Path) -> int:
    if not db.exists():
        return -1
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return -1


def _kill_when(ws: Path, root: Path, at_least: int) -> int:
    proc = subprocess.Popen(_ingest_cmd(ws, root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    try:
        while time.time() < deadline and proc.poll() is None:
            if _count(ws / "catalog.sqlite") >= at_least:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "ingest finished before it could be killed; make the fixture larger"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    return _count(ws / "catalog.sqlite")


def _dump(ws: Path) -> tuple[list, list]:
    con = sqlite3.connect(ws / "catalog.sqlite")
    try:
        records = con.execute("SELECT key, source, split, label, fingerprint, data FROM records ORDER BY key").fetchall()
        quarantine = con.execute("SELECT source, path, stage, reason FROM quarantine ORDER BY path").fetchall()
    finally:
        con.close()
    return records, quarantine


def test_sigkill_at_any_point_then_rerun_equals_uninterrupted(tmp_path):
    root = tmp_path / "src"
    _make_source(root)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    subprocess.run(_ingest_cmd(clean, root), check=True, capture_output=True)
    counts = [_kill_when(killed, root, at) for at in (0, 7, 25)]
    assert counts[0] < N_IMAGES and counts[-1] < N_IMAGES, counts
    assert counts == sorted(counts)  # nothing committed was lost
    done = subprocess.run(_ingest_cmd(killed, root), check=True, capture_output=True, text=True)
    assert '"quarantined": 1' in done.stdout.splitlines()[-1]
    assert _dump(killed) == _dump(clean)
    assert len(_dump(clean)[0]) == N_IMAGES
