"""Stage 2 learns what it is shown, and recognises a defect named in words it never trained on.

One tiny-preset run trained on a generated two-class set (bright scratches and dark holes on a textured
background) for a few hundred CPU steps, against the same run at 0 steps, on held-out records:
- the learned model alone finds and names the trained classes (accuracy, pixel AUROC, AUPRO);
- open vocabulary: on held-out records of a third kind (brown stains) that training never saw, `predict --classes
  scratch,hole,stain` with the CLIP ensemble names the stains and finds their pixels. The stage-1 folder's CLIP
  tower knows the three words (`add_clip_text_tower`, as a pretrained CLIP knows real ones); the mask generator
  must propose the stain regions it was never shown (unseen pixels are ignored in training, not background).
A 0-step model fails every assertion here, and so does the trained model without the ensemble on the stains.
"""

from __future__ import annotations

import json

import pytest

from imdd_models.evaluation.run import evaluate
from imdd_models.segmentation.predict import predict
from imdd_models.segmentation.train import TrainOptions, train_seg
from seg_fixtures import add_clip_text_tower, write_diffusion_folder, write_two_class_set

STEPS = 300


@pytest.fixture(scope="module")
def runs(tiny_components, tmp_path_factory):
    root = tmp_path_factory.mktemp("seg-learns")
    diffusion = add_clip_text_tower(write_diffusion_folder(tiny_components, root / "stage1"))
    train = write_two_class_set(root / "train", per_class=8, normals=4, seed=0, split="train")
    test = write_two_class_set(root / "test", per_class=6, normals=4, seed=1, split="test")  # held out
    novel = write_two_class_set(root / "novel", per_class=6, normals=2, seed=2, split="test", classes=("stain",))
    results = {}
    for steps in (0, STEPS):
        out = root / f"model-{steps}"
        summary = train_seg(TrainOptions(diffusion=diffusion, data=str(train), config="tiny", out=out,
                                         classes="scratch,hole", max_steps=steps, allow_untrained=True,
                                         cache_features=root / "cache", save_every=1000))
        run = {"summary": summary}
        predict(out, "scratch,hole", root / f"seen-{steps}", data=str(test), split="test", batch_size=8,
                use_clip=False)
        run["seen"] = evaluate(root / f"seen-{steps}", str(test), split="test", breakdown=False)
        for clip in ((True, False) if steps else (True,)):
            pred = root / f"novel-{steps}-{clip}"
            run[f"novel-{clip}"] = predict(out, "scratch,hole,stain", pred, data=str(novel), split="test",
                                           batch_size=8, use_clip=clip)
            lines = [json.loads(x) for x in (pred / "predictions.jsonl").read_text().splitlines()]
            stains = [p for p in lines if "/stain/" in p["key"]]
            run[f"named-{clip}"] = sum(p["defect_type"] == "stain" for p in stains) / len(stains)
            run[f"unseen-{clip}"] = evaluate(pred, str(novel), split="test", classes_seen="scratch,hole",
                                             breakdown=False)["unseen"]
        results[steps] = run
    return results


def test_trained_model_beats_the_same_run_at_zero_steps_on_held_out_records(runs):
    r0, r1 = runs[0]["seen"], runs[STEPS]["seen"]
    s1 = runs[STEPS]["summary"]
    assert runs[0]["summary"]["steps"] == 0 and s1["steps"] == STEPS and s1["loss_end"] < 0.4 * s1["loss_start"]
    # which defect (or none) each held-out image shows
    assert r1["accuracy"] >= 0.75 and r1["accuracy"] >= r0["accuracy"] + 0.3, (r0["accuracy"], r1["accuracy"])
    # where it is
    assert r1["pixel_auroc"] >= 0.95 and r1["pixel_auroc"] >= r0["pixel_auroc"] + 0.15, (r0["pixel_auroc"],
                                                                                        r1["pixel_auroc"])
    assert r1["aupro"] >= r0["aupro"] + 0.4, (r0["aupro"], r1["aupro"])


def test_a_defect_never_trained_on_is_named_and_found_with_the_clip_ensemble(runs):
    trained, untrained = runs[STEPS], runs[0]
    assert trained["novel-True"]["unseen_classes"] == ["stain"] and trained["novel-True"]["ensemble"]["on"]
    assert trained["novel-True"]["ensemble"]["clip_beta"] == 0.65
    # the stains are named "stain" by the trained model with the ensemble ...
    assert trained["named-True"] >= 0.8, trained["named-True"]
    # ... not by the same run at 0 steps (same CLIP tower), nor by the learned classifier alone
    assert untrained["named-True"] <= trained["named-True"] - 0.5, untrained["named-True"]
    assert trained["named-False"] <= trained["named-True"] - 0.5, trained["named-False"]
    # and their pixels are found: the mask generator proposes regions of a kind it was never shown
    u1, u0 = trained["unseen-True"], untrained["unseen-True"]
    assert u1["pixel_auroc"] >= 0.9 and u1["pixel_auroc"] >= u0["pixel_auroc"] + 0.2, (u0["pixel_auroc"],
                                                                                      u1["pixel_auroc"])
    assert u1["accuracy"] >= u0["accuracy"] + 0.5, (u0["accuracy"], u1["accuracy"])
