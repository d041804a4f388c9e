"""`train-seg --eval-every N`: held-out scoring during training keeps the best step's weights.

Evaluation draws no random numbers, so the model a run with evaluation selects at step k is bit-identical to a
run of k steps without evaluation; the history, the selection and the weights survive a kill and --resume.
To make the best step an early one, one held-out set has its masks inverted (they mark everything but the
defect): the better the model learns, the worse it scores there.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from safetensors.torch import load_file

from imdd_build.errors import RunError
from imdd_models.cli import app
from imdd_models.segmentation.predict import model_identity
from imdd_models.segmentation.train import TrainOptions, train_seg
from seg_fixtures import write_diffusion_folder, write_train_validation_set

from .conftest import invoke

STEPS = 24


@pytest.fixture(scope="module")
def setup(tiny_components, tmp_path_factory):
    root = tmp_path_factory.mktemp("seg-eval")
    diffusion = write_diffusion_folder(tiny_components, root / "stage1")
    data = write_train_validation_set(root / "data", (3, 3, 7))
    inverted = write_train_validation_set(root / "inverted", (3, 3, 7))
    _invert_masks(inverted / "data" / "validation-00000-of-00001.parquet")
    return {"root": root, "diffusion": diffusion, "data": data, "inverted": inverted}


def _invert_masks(path) -> None:
    table = pq.read_table(path)
    rows = table.to_pylist()
    for row in rows:
        if row["mask"] is not None:
            mask = np.asarray(Image.open(io.BytesIO(row["mask"]["bytes"])).convert("L"))
            buf = io.BytesIO()
            Image.fromarray((255 - mask).astype(np.uint8), "L").save(buf, format="PNG")
            row["mask"] = {**row["mask"], "bytes": buf.getvalue()}
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), path)


def _opts(setup, out, **kw) -> TrainOptions:
    base = dict(diffusion=setup["diffusion"], data=str(setup["data"]), config="tiny", out=out,
                classes="scratch,hole", num_workers=0, save_every=1000, overrides={"lr": 3e-3})
    return TrainOptions(**{**base, **kw})


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_the_model_is_the_best_held_out_step_and_equals_a_run_stopped_there(setup):
    root = setup["root"]
    summary = train_seg(_opts(setup, root / "eval", max_steps=STEPS, eval_every=4, data=str(setup["inverted"])))
    ev = summary["eval"]
    assert ev["metric"] == "pixel_auroc" and ev["records"] == 9 and ev["split"] == "validation"
    assert [h["step"] for h in ev["history"]] == list(range(4, STEPS + 1, 4))
    values = [h["pixel_auroc"] for h in ev["history"]]
    assert ev["selected_value"] == max(values)
    best = ev["selected_step"]
    assert values.index(max(values)) == [h["step"] for h in ev["history"]].index(best)
    config = json.loads((root / "eval" / "seg_config.json").read_text())
    assert config["selected"]["step"] == best and config["selected"]["last_step"] == STEPS
    assert model_identity(root / "eval")["step"] == best
    # the selected weights are exactly those of the same run stopped at that step, without evaluation
    assert best < STEPS and values[-1] < ev["selected_value"]  # the inverted truth: learning scores worse
    train_seg(_opts(setup, root / f"plain-{best}", max_steps=best, data=str(setup["inverted"])))
    a, b = _weights(root / "eval"), _weights(root / f"plain-{best}")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    # and evaluation did not change the run: its last step is the plain run's last step
    train_seg(_opts(setup, root / "plain", max_steps=STEPS, data=str(setup["inverted"])))
    last = load_file(str(root / "eval" / "checkpoint" / "model.safetensors"))
    plain = _weights(root / "plain")
    assert all((last[k] == plain[k]).all() for k in last)
    assert any((a[k] != plain[k]).any() for k in a)  # the folder's model is not the last step


def test_a_resumed_run_keeps_the_history_and_the_selection(setup):
    root = setup["root"]
    whole = train_seg(_opts(setup, root / "whole", max_steps=STEPS, eval_every=4))
    train_seg(_opts(setup, root / "split", max_steps=12, eval_every=4, save_every=4))
    resumed = train_seg(_opts(setup, root / "split", max_steps=STEPS, eval_every=4, save_every=4, resume=True))
    assert resumed["eval"]["history"] == whole["eval"]["history"]
    assert resumed["eval"]["selected_step"] == whole["eval"]["selected_step"]
    a, b = _weights(root / "whole"), _weights(root / "split")
    assert all((a[k] == b[k]).all() for k in a)


def test_eval_options_are_checked(setup, tmp_path):
    with pytest.raises(RunError, match="--eval-every must be >= 0"):
        train_seg(_opts(setup, tmp_path / "a", max_steps=2, eval_every=-1))
    with pytest.raises(RunError, match="training split"):
        train_seg(_opts(setup, tmp_path / "b", max_steps=2, eval_every=1, eval_split="train"))
    with pytest.raises(RunError, match="--eval-limit must be >= 1"):
        train_seg(_opts(setup, tmp_path / "c", max_steps=2, eval_every=1, eval_limit=0))
    # no such split: trained as usual (the last step), the summary says why nothing was selected
    out = invoke(app, "train-seg", "--diffusion", str(setup["diffusion"]), "--data", str(setup["data"]), "--config",
                 "tiny", "--classes", "scratch,hole", "--max-steps", "2", "--num-workers", "0", "--eval-every", "1",
                 "--eval-split", "nope", "--calibrate", "off", "--out", str(tmp_path / "d"))
    assert "nope" in out["eval"]["skipped"] and "selected" not in json.loads((tmp_path / "d" /
                                                                               "seg_config.json").read_text())


def test_a_held_out_split_of_one_label_is_skipped_and_said(setup, tmp_path):
    """Normal records alone give no AUROC: every evaluation was None, silently, and the last step was kept."""
    normals_only = write_train_validation_set(tmp_path / "data", (0, 3, 7))
    out = train_seg(_opts(setup, tmp_path / "m", max_steps=2, eval_every=1, data=str(normals_only)))
    assert out["eval"]["skipped"] == ("--eval-split validation: no held-out records of both labels (normal, and "
                                      "defective of the trained classes) in --data")
    assert out["steps"] == 2
    defects_only = write_train_validation_set(tmp_path / "defects", (2, 0, 7))  # pixels of both kinds: scored
    out = train_seg(_opts(setup, tmp_path / "d", max_steps=2, eval_every=1, data=str(defects_only)))
    assert "skipped" not in out["eval"] and out["eval"]["metric"] == "pixel_auroc" and out["eval"]["selected_step"]
