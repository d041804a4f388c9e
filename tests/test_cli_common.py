"""Run-level errors vs bugs (imdd_build/cli/common.py): RunError, RootError, a missing or undecodable input
file become one `error:` line and exit 2; any other exception keeps its traceback."""

import pytest
import typer
from typer.testing import CliRunner

from imdd_build.cli import app
from imdd_build.cli.common import run_level_errors
from imdd_build.errors import RunError


def _command(exc: BaseException):
    @run_level_errors("probe")
    def probe(as_json: bool = False) -> None:
        raise exc
    return probe


@pytest.mark.parametrize("exc", [RunError("bad --x"), FileNotFoundError("f.yaml: no such file"),
                                 UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")])
def test_run_level_errors_exit_2(exc):
    with pytest.raises(typer.Exit) as info:
        _command(exc)(as_json=True)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("exc", [KeyError("field"), TypeError("oops"), AttributeError("x")])
def test_bugs_keep_their_traceback(exc):
    with pytest.raises(type(exc)):
        _command(exc)()


def test_an_undecodable_roots_file_is_one_error_line(tmp_path):
    roots = tmp_path / "roots.yaml"
    roots.write_bytes(b"\xff\xfe not utf-8")
    result = CliRunner().invoke(app, ["--workspace", str(tmp_path / "ws"), "sources", "--roots", str(roots),
                                      "--json"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1].startswith('{"command": "sources", "error": ')


def test_a_run_error_from_a_dataloader_worker_keeps_the_workers_message(capsys):
    # torch re-raises a worker's exception as "Caught RunError in DataLoader worker process 0." plus the
    # worker's traceback; the one error line is the worker's own message, not torch's first line
    torch = pytest.importorskip("torch")

    class Empty(torch.utils.data.IterableDataset):
        def __iter__(self):
            raise RunError("shards/x: no samples for rank 0 worker 0")

    @run_level_errors("probe")
    def probe(as_json: bool = False) -> None:
        list(torch.utils.data.DataLoader(Empty(), num_workers=1))

    with pytest.raises(typer.Exit):
        probe(as_json=True)
    out = capsys.readouterr()
    assert out.out.strip().splitlines()[-1] == \
        '{"command": "probe", "error": "shards/x: no samples for rank 0 worker 0"}'
