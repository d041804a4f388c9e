"""Conventions shared by every `imdd-models` command (the same as `imdd-build`'s):

- run-level failures (bad option, unusable input) raise `RunError` (or FileNotFoundError for a missing
  file, UnicodeDecodeError for an undecodable one) and become one `error: ...` line on stderr and exit
  code 2 (with `--json`, also `{"command", "error"}` on stdout); any other exception is a bug and keeps
  its traceback;
- `--json` prints one JSON object as the last line of stdout, otherwise a summary table;
- long work shows a rich progress bar on stderr (`progress_bar`).
"""

from __future__ import annotations

import functools

import typer

from imdd_build.console import emit, err, one_line_errors, progress_bar  # noqa: F401  (re-exported for command modules)
from imdd_build.errors import RunError  # noqa: F401  (one run-level error type for both CLIs)

JSON_OPT = typer.Option(False, "--json", help="Print one JSON object as the last line of stdout.")


class _DropMessage:
    """A logging filter that drops the records whose message starts with `prefix`, nothing else."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def filter(self, record) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_third_party() -> None:
    """Silence the third-party messages a normal run cannot fix, each narrowly (one logger, one message).

    - huggingface_hub's "Repo card metadata block was not found": `datasets.load_dataset` on a folder or Hub
      repo whose README.md has no YAML block (any plain README beside WebDataset tars) logs it, once per load,
      although the card is never used; the data loads the same. Only that message of that logger is dropped.
    """
    import logging
    logger = logging.getLogger("huggingface_hub.repocard")
    if not any(isinstance(f, _DropMessage) for f in logger.filters):
        logger.addFilter(_DropMessage("Repo card metadata block was not found"))


def check_device(name: str | None) -> str | None:
    """`--device` of the stage-1 commands checked before anything is loaded or written: cpu, cuda or cuda:N
    (None: the command's default). A misspelt or unusable device is one error line, not torch's traceback."""
    if name is None:
        return None
    import torch
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise RunError(f"--device {name!r}: expected cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise RunError(f"--device {name!r}: expected cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunError(f"--device {name}: no CUDA device here")
    return name


def command_line(command: str, fn, values: dict, **set_flags: bool) -> str:
    """The running command as a shell line, e.g. a stopped run's resume command: `fn`'s options whose `values`
    differ from their defaults (not --json), plus the boolean flags in `set_flags` (e.g. resume=True)."""
    import inspect
    import shlex

    import typer.models
    head, tail = ["imdd-models", command], []
    values = {**values, **set_flags}
    for name, param in inspect.signature(fn).parameters.items():
        info, value = param.default, values.get(name)
        if name == "as_json" or not isinstance(info, typer.models.ParameterInfo) or value is None:
            continue
        if isinstance(info, typer.models.ArgumentInfo):
            tail += [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
            continue
        if value == info.default:
            continue
        flag = (info.param_decls or (f"--{name.replace('_', '-')}",))[0]
        if isinstance(value, bool):  # a flag (`--resume`) or a pair (`--breakdown/--no-breakdown`)
            on, _, off = flag.partition("/")
            head += [on] if value else ([off] if off else [])
        else:
            head += [flag, str(value)]
    return shlex.join(head + tail)


def check_out_folder(path, flag: str = "--out") -> None:
    """A folder option that the command writes into: RunError when the path, or a folder above it, is an
    existing file (mkdir would fail deep inside the command with a traceback, or after work was done)."""
    if path is None:
        return
    from pathlib import Path
    path = Path(path)
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                where = "" if candidate == path else f" ({candidate} is a file)"
                raise RunError(f"{flag} {path}: not a folder{where}")
            return


# The folder options every imdd-models command writes into (all of them folders).
OUT_FOLDER_OPTIONS = {"out": "--out", "shards": "--shards", "cache_features": "--cache-features"}


def run_level_errors(command: str):
    """Decorator: run-level failures (`RunError`, a missing or undecodable input file) become one
    `error:` line and exit code 2; any other exception (a KeyError or ValueError from torch, diffusers,
    PIL or our own code) is a bug and keeps its traceback. The output folder options are checked first."""
    def wrap(fn):
        @functools.wraps(fn)
        def checked(*args, **kwargs):
            for name, flag in OUT_FOLDER_OPTIONS.items():
                check_out_folder(kwargs.get(name), flag)
            return fn(*args, **kwargs)
        return one_line_errors(command, (RunError, FileNotFoundError, UnicodeDecodeError))(checked)
    return wrap
