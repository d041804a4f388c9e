"""push-to-hub against a real HTTP server on 127.0.0.1 set as the Hub endpoint (tests/hub_server.py):
retries on 429/5xx, an interrupted push resumed without re-sending committed files, README last,
stale files removed, gating before data, the token sent but never printed or written.

hf_xet is disabled so huggingface_hub uses the plain LFS protocol the fake server implements.
"""

import datasets
import pytest

from conftest import Cli
from hub_server import FakeHub
from publish_fixtures import build_workspace, write_sources

from imdd_build import retry

TOKEN = "hf_fakeSECRETtoken0123456789"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    base = tmp_path_factory.mktemp("hub")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMDD_SOURCES", str(base / "sources.yaml"))
        build_workspace(base, Cli)
    return base


@pytest.fixture
def hub(base, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("IMDD_SOURCES", str(write_sources(tmp_path / "sources.yaml", gated=True)))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(retry, "HUB_BACKOFF", retry.Backoff(base=0.01, cap=120.0, max_retries=2))
    with FakeHub(TOKEN) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def _local(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _api_calls(hub, method, fragment):
    return [i for i, (m, path, _) in enumerate(hub.requests) if m == method and fragment in path]


def test_push_with_retries_gating_and_readme_last(base, hub, tmp_path):
    cli = Cli(base / "ws")
    hub.fail("POST", r"/commit/", 429, times=1, retry_after="0")   # rate limited: our backoff retries
    hub.fail("POST", r"/preupload/", 503, times=1)                 # huggingface_hub's http_backoff retries
    hub.fail("PUT", r"^/lfs/", 500, times=1)
    out = cli("push-to-hub", "me/imdd-test", "--files-per-commit", "3")
    staged = base / "ws" / "publish" / "me__imdd-test"
    up = out["upload"]
    assert up["commits"] >= 3 and up["retries"] >= 1 and up["skipped_unchanged"] == 0
    assert hub.files("me/imdd-test") == _local(staged)
    repo = hub.repos["me/imdd-test"]
    # README.md only in the last commit; data commits hold at most 3 files
    assert [c for c in repo.commits if "README.md" in c[2]] == [repo.commits[-1]]
    assert all(len(c[2]) <= 3 for c in repo.commits[:-1])
    # gated (twin has gated: true) before any file was committed
    assert repo.gated == "auto" and out["gated"]
    assert _api_calls(hub, "PUT", "/settings")[0] < _api_calls(hub, "POST", "/commit/")[0]
    # the token went in every API call and nowhere else
    assert all(auth == f"Bearer {TOKEN}" for m, path, auth in hub.requests if not path.startswith("/lfs/"))
    assert TOKEN not in cli.last.stdout and TOKEN not in cli.last.stderr
    for path in (base / "ws").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert not any(TOKEN.encode() in data for data in hub.files("me/imdd-test").values())
    # what landed on the server loads like the dry run
    mirror = tmp_path / "mirror"
    for rel, data in hub.files("me/imdd-test").items():
        (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
        (mirror / rel).write_bytes(data)
    ds = datasets.load_dataset(str(mirror), "twin")
    assert {s: ds[s].num_rows for s in ds} == {"train": 1, "test": 2}
    # a second push of the same data sends nothing
    again = cli("push-to-hub", "me/imdd-test")["upload"]
    assert again["uploaded"] == 0 and again["commits"] == 0 and again["skipped_unchanged"] == up["files"]


def test_interrupted_push_resumes_without_resending(base, hub):
    cli = Cli(base / "ws")
    staged = base / "ws" / "publish" / "me__resume"
    # 1. an earlier push (twin only, tiny shards) to branch dev, one commit retried after a 500
    hub.fail("POST", r"/commit/", 500, times=1)
    first = cli("push-to-hub", "me/resume", "--revision", "dev", "--sources", "twin", "--max-shard-size", "300KB")
    assert first["upload"]["retries"] >= 1
    repo = hub.repos["me/resume"]
    first_layout = set(hub.files("me/resume", "dev"))
    assert any(p.endswith("-of-00002.parquet") for p in first_layout)
    n_first = len(repo.commits)
    puts_first = len(hub.lfs_puts)
    # 2. the full push is interrupted: its second commit fails on every try (HUB_BACKOFF.max_retries=2 here)
    args = ("push-to-hub", "me/resume", "--revision", "dev", "--files-per-commit", "4")
    hub.fail("POST", r"/commit/", 503, times=3, after=1)
    out = cli(*args, expect=1)
    assert "rerun the same command" in out["error"] and "HTTP 503" in out["error"]
    interrupted = repo.commits[n_first:]
    committed = {p for c in interrupted for p in c[2]}
    assert len(interrupted) == 1 and committed and "README.md" not in committed
    assert hub.files("me/resume", "dev")["README.md"] != (staged / "README.md").read_bytes()  # old card still up
    puts_before_resume = list(hub.lfs_puts)
    n_before_resume = len(repo.commits)
    # 3. the same command again resumes
    up = cli(*args)["upload"]
    resumed = repo.commits[n_before_resume:]
    resent = {p for c in resumed for p in c[2]}
    assert not resent & committed  # files committed by the interrupted run are not sent again
    assert up["skipped_unchanged"] >= len(committed)
    assert not set(hub.lfs_puts[len(puts_before_resume):]) & set(puts_before_resume)
    assert len(hub.lfs_puts) == len(set(hub.lfs_puts)) and puts_first > 0  # no LFS object uploaded twice
    assert resumed[-1][2] == ["README.md"] and "README.md" not in {p for c in resumed[:-1] for p in c[2]}
    # files of the first layout that the new one does not have are deleted with the card
    assert hub.files("me/resume", "dev") == _local(staged)
    assert set(resumed[-1][3]) == first_layout - set(_local(staged)) and resumed[-1][3]
    assert repo.branches["main"] == {}  # everything went to --revision dev


def test_push_without_a_repo_id_goes_to_imdd_1m_under_the_user(base, hub, tmp_path):
    cli = Cli(base / "ws")
    out = cli("push-to-hub", "--files-per-commit", "50")
    assert out["repo_id"] == "me/imdd-1m" and "me/imdd-1m" in hub.repos
    assert hub.files("me/imdd-1m") == _local(base / "ws" / "publish" / "me__imdd-1m")
