"""Stage 2 learns what it is shown: the tiny preset trained on a generated two-class set (bright scratches and
dark holes on a textured background) for a few hundred CPU steps, against the same run at 0 steps, on held-out
records. A 0-step model fails every assertion here (its accuracy is what "always one answer" scores, its pixel
AUROC what the untrained features give)."""

from __future__ import annotations

import pytest

from imdd_models.evaluation.run import evaluate
from imdd_models.segmentation.predict import predict
from imdd_models.segmentation.train import TrainOptions, train_seg
from seg_fixtures import write_diffusion_folder, write_two_class_set

STEPS = 300


@pytest.fixture(scope="module")
def runs(tiny_components, tmp_path_factory):
    root = tmp_path_factory.mktemp("seg-learns")
    diffusion = write_diffusion_folder(tiny_components, root / "stage1")
    train = write_two_class_set(root / "train", per_class=8, normals=4, seed=0, split="train")
    test = write_two_class_set(root / "test", per_class=6, normals=4, seed=1, split="test")  # held out
    results = {}
    for steps in (0, STEPS):
        out = root / f"model-{steps}"
        summary = train_seg(TrainOptions(diffusion=diffusion, data=str(train), config="tiny", out=out,
                                         classes="scratch,hole", max_steps=steps, allow_untrained=True,
                                         cache_features=root / "cache", save_every=1000))
        predict(out, "scratch,hole", root / f"pred-{steps}", data=str(test), split="test", batch_size=8)
        results[steps] = (summary, evaluate(root / f"pred-{steps}", str(test), split="test", breakdown=False))
    return results


def test_trained_model_beats_the_same_run_at_zero_steps_on_held_out_records(runs):
    (s0, r0), (s1, r1) = runs[0], runs[STEPS]
    assert s0["steps"] == 0 and s1["steps"] == STEPS and s1["loss_end"] < 0.4 * s1["loss_start"]
    # which defect (or none) each held-out image shows
    assert r1["accuracy"] >= 0.75 and r1["accuracy"] >= r0["accuracy"] + 0.3, (r0["accuracy"], r1["accuracy"])
    # where it is
    assert r1["pixel_auroc"] >= 0.95 and r1["pixel_auroc"] >= r0["pixel_auroc"] + 0.15, (r0["pixel_auroc"],
                                                                                        r1["pixel_auroc"])
    assert r1["aupro"] >= r0["aupro"] + 0.4, (r0["aupro"], r1["aupro"])
