"""Wall time of `imdd-models train-diffusion --help` against `python -c "import torch"`, in one run.

    python bench/help_time.py [--repeats 7] [--json-out FILE]

Each command runs --repeats times as a fresh interpreter, alternating (help, torch, help, torch, ...) so that
load on the machine hits both alike; the table gives the median and the best wall time of each, and the
ratio help / import torch of the medians. Target (issue 26): < 0.5. The help runs `python -m imdd_models`
from this checkout (the installed console script may point elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "imdd-models train-diffusion --help": [sys.executable, "-m", "imdd_models", "train-diffusion", "--help"],
    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def _time(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for cmd in COMMANDS.values():  # warm the page cache once
        _time(cmd, env)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):
        for name, cmd in COMMANDS.items():
            times[name].append(_time(cmd, env))
    help_name, torch_name = COMMANDS
    ratio = statistics.median(times[help_name]) / statistics.median(times[torch_name])
    print(f"| command | median s | best s |\n|---|---|---|")
    for name, ts in times.items():
        print(f"| `{name}` | {statistics.median(ts):.3f} | {min(ts):.3f} |")
    print(f"\nhelp / import torch (medians): **{ratio:.2f}x** (target < 0.5x)")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"repeats": args.repeats, "seconds": times, "ratio": ratio}, indent=1))


if __name__ == "__main__":
    main()
