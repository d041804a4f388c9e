"""`imdd-models predict`: any class names end to end, on shards and on image files of any size; the
predictions folder in the evaluation format (checked by `imdd_models.evaluation.validate_predictions`); options
guarded; a folder resumed only by the same model and options. Recognition of unseen names: test_seg_learns.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imdd_models.cli import app
from imdd_models.evaluation import validate_predictions
from seg_fixtures import write_diffusion_folder, write_seg_shards


def check_predictions(folder: Path) -> list[dict]:
    """The lines of a predictions folder that the evaluator accepts, plus what predict adds to the format."""
    assert validate_predictions(folder) == []
    lines = [json.loads(x) for x in (folder / "predictions.jsonl").read_text().splitlines()]
    for p in lines:
        # predict always scores, decides and writes a map (the format allows null for each)
        assert isinstance(p["image_score"], float) and p["label"] in ("normal", "defective")
        assert p["defect_type"] is None or p["defect_type"] in p["class_scores"]
        assert (p["defect_type"] is None) == (p["label"] == "normal")
        for b in p["boxes"]:
            assert b["label"] in p["class_scores"]
            assert 0 <= b["x0"] < b["x1"] <= 512 and 0 <= b["y0"] < b["y1"] <= 512
        assert abs(float(np.load(folder / p["anomaly_map"]).max()) - p["image_score"]) < 1e-5
    return lines


@pytest.fixture(scope="module")
def trained(tiny_components, tmp_path_factory):
    root = tmp_path_factory.mktemp("seg-predict")
    diffusion = write_diffusion_folder(tiny_components, root / "stage1")
    train = write_seg_shards(root / "train", per_class=4, classes=("scratch", "hole"))
    test = write_seg_shards(root / "test", per_class=2, seed=1, classes=("scratch", "hole", "crack"), split="test")
    result = CliRunner().invoke(app, ["train-seg", "--diffusion", str(diffusion), "--data", str(train), "--config",
                                      "tiny", "--out", str(root / "model"), "--classes", "scratch,hole",
                                      "--max-steps", "4", "--json"])
    assert result.exit_code == 0, result.output
    return {"model": root / "model", "test": test, "root": root}


def predict(*args, expect=0):
    result = CliRunner().invoke(app, ["predict", *args, "--json"])
    assert result.exit_code == expect, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_zero_shot_class_on_shards(trained, tmp_path):
    out = tmp_path / "pred"
    s = predict("--model", str(trained["model"]), "--classes", "scratch,hole,crack", "--data", str(trained["test"]),
                "--split", "test", "--out", str(out))
    assert s["unseen_classes"] == ["crack"] and s["images"] == 2 * 3 + 3 + 2
    lines = check_predictions(out)
    assert all(set(p["class_scores"]) == {"scratch", "hole", "crack"} for p in lines)
    # whether the unseen name is *recognised* is test_seg_learns.py's job (a 0-step model fails it); here: the
    # format, the seen/unseen split of the names and the ensemble's state (no CLIP text tower in this folder)
    assert s["seen_classes"] == ["scratch", "hole"] and s["ensemble"]["on"] is False
    for p in lines:
        assert (out / p["class_map"]).is_file() and "geometry" not in p["extra"]  # these shards carry none
        name = Path(p["anomaly_map"]).stem
        assert Image.open(out / "overlays" / f"{name}.png").size == (512, 512)


def test_image_files_of_any_size_and_resume(trained, tmp_path):
    files = []
    for i, (size, fmt) in enumerate((((300, 200), "PNG"), ((640, 480), "JPEG"))):
        path = tmp_path / f"img{i}.{fmt.lower()}"
        arr = np.random.default_rng(i).integers(0, 255, (size[1], size[0], 3)).astype(np.uint8)
        Image.fromarray(arr).save(path, fmt)
        files.append(path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    out = tmp_path / "pred"
    args = ["--model", str(trained["model"]), "--classes", "dent,scratch", "--out", str(out)]
    s = predict(*[str(f) for f in files], str(broken), *args)
    assert s["images"] == 2 and s["bad"] == 1 and "broken.png" in s["bad_examples"][0]
    lines = check_predictions(out)
    for p, f in zip(lines, files):
        w, h = Image.open(f).size
        assert p["key"] == str(f) and p["extra"]["geometry"]["resize_mode"] == "letterbox"
        assert Image.open(out / "overlays" / f"{Path(p['anomaly_map']).stem}.png").size == (w, h)
        x0, y0, x1, y1 = p["extra"]["geometry"]["content_box"]
        heat = np.load(out / p["anomaly_map"])
        assert heat[:y0].max(initial=0) == 0 and heat[y1:].max(initial=0) == 0  # nothing in the padding
        for b in p["extra"]["boxes_original"]:
            assert -1 <= b["x0"] <= b["x1"] <= w + 1 and -1 <= b["y0"] <= b["y1"] <= h + 1
    again = predict(*[str(f) for f in files], *args)
    assert again["images"] == 0 and again["skipped_done"] == 2
    assert len(check_predictions(out)) == 2
    err = predict(str(files[0]), "--model", str(trained["model"]), "--classes", "hole", "--out", str(out), expect=2)
    assert "another model, class list" in err["error"]


@pytest.mark.parametrize("args, option", [
    (["--limit", "-1"], "--limit"), (["--limit", "0"], "--limit"), (["--batch-size", "0"], "--batch-size"),
    (["--threshold", "1.5"], "--threshold"), (["--clip-beta", "-0.1"], "--clip-beta"), (["--writers", "-1"], "--writers")])
def test_numeric_options_are_checked(trained, tmp_path, args, option):
    out = tmp_path / "pred"
    err = predict("--model", str(trained["model"]), "--classes", "hole", "--data", str(trained["test"]), "--split",
                  "test", "--out", str(out), *args, expect=2)
    assert err["error"].startswith(option) and not out.exists()


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_writer_threads_write_the_same_bytes_and_a_failed_write_loses_nothing_done(trained, tmp_path):
    from imdd_models.segmentation.folder import safe_name as _safe_name
    common = ["--model", str(trained["model"]), "--classes", "scratch,hole,crack", "--data", str(trained["test"]),
              "--split", "test", "--batch-size", "2"]
    serial = predict(*common, "--out", str(tmp_path / "serial"), "--writers", "0")
    threaded = predict(*common, "--out", str(tmp_path / "threaded"), "--writers", "3")
    assert serial["images"] == threaded["images"] == 11
    assert _files(tmp_path / "serial") == _files(tmp_path / "threaded")  # predict.json/meta.json hold no timings
    keys = [json.loads(x)["key"] for x in (tmp_path / "serial" / "predictions.jsonl").read_text().splitlines()]
    # one image's overlay cannot be written (a folder in its place): the run fails in one line, every other
    # image whose files were written keeps its line, the failed one has none, and a rerun completes it
    out = tmp_path / "failing"
    assert predict(*common, "--out", str(out), "--limit", "2")["images"] == 2
    (out / "overlays" / f"{_safe_name(keys[4])}.png").mkdir()
    err = predict(*common, "--out", str(out), "--writers", "3", expect=2)
    assert err["error"].startswith(f"{out / 'overlays' / _safe_name(keys[4])}.png: cannot write"), err
    kept = [json.loads(x)["key"] for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert keys[4] not in kept and set(keys[:4]) <= set(kept) and len(kept) == len(set(kept))
    (out / "overlays" / f"{_safe_name(keys[4])}.png").rmdir()
    again = predict(*common, "--out", str(out), "--writers", "3")
    assert again["images"] == 11 - len(kept) and again["skipped_done"] == len(kept)
    lines = check_predictions(out)
    assert sorted(p["key"] for p in lines) == sorted(keys)
    by_key = {p["key"]: p for p in lines}
    assert all(by_key[json.loads(x)["key"]] == json.loads(x)
               for x in (tmp_path / "serial" / "predictions.jsonl").read_text().splitlines())


def test_a_failed_write_of_the_last_image_still_fails_the_run(trained, tmp_path):
    """The last image's files are written after the loop, while the writer closes: its failure is not lost."""
    from imdd_models.segmentation.folder import safe_name
    common = ["--model", str(trained["model"]), "--classes", "scratch,hole", "--data", str(trained["test"]),
              "--split", "test", "--batch-size", "2", "--writers", "3", "--out", str(tmp_path / "p")]
    assert predict(*common, "--limit", "1")["images"] == 1
    keys = [json.loads(x)["key"] for x in (tmp_path / "p" / "predictions.jsonl").read_text().splitlines()]
    from imdd_models.data import ReadStats, iter_records
    last = [r["key"] for r in iter_records(str(trained["test"]), "test", None, ReadStats())][-1]
    (tmp_path / "p" / "overlays" / f"{safe_name(last)}.png").mkdir()
    err = predict(*common, expect=2)
    assert err["error"].startswith(f"{tmp_path / 'p' / 'overlays' / safe_name(last)}.png: cannot write"), err
    kept = [json.loads(x)["key"] for x in (tmp_path / "p" / "predictions.jsonl").read_text().splitlines()]
    assert last not in kept and kept[0] == keys[0] and len(kept) == len(set(kept)) == 10


def test_meta_names_the_model_seen_and_unseen_classes_and_the_split(trained, tmp_path):
    out = tmp_path / "pred"
    result = CliRunner().invoke(app, ["predict", "--model", str(trained["model"]), "--classes", "hole,scrach,dent",
                                      "--data", str(trained["test"]), "--split", "test", "--out", str(out),
                                      "--limit", "2", "--json"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "'scrach'" in warnings[0] and "'scratch'" in warnings[0]  # dent is a real term
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seen_classes"] == ["hole"] and meta["unseen_classes"] == ["scrach", "dent"]
    assert meta["split"] == "test" and meta["trained_classes"] == ["scratch", "hole"] and meta["step"] == 4
    assert len(meta["weights_sha256"]) == 64 and meta["options"]["threshold"] == 0.5
    for p in check_predictions(out):
        assert p["class_names"] == ["hole", "scrach", "dent"]
        cmap = np.asarray(Image.open(out / p["class_map"]))
        assert cmap.dtype == np.uint8 and cmap.shape == (512, 512) and cmap.max() <= 3


def test_a_model_trained_further_is_not_mixed_with_its_old_predictions(trained, tmp_path):
    import shutil
    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    out = tmp_path / "pred"
    args = ["--classes", "scratch,hole", "--data", str(trained["test"]), "--split", "test", "--out", str(out)]
    first = predict("--model", str(model), *args)
    assert first["images"] == 11 and first["step"] == 4
    assert predict("--model", str(model), *args)["skipped_done"] == 11  # same model and options: resumes
    err = predict("--model", str(model), *args[:-2], "--out", str(out), "--threshold", "0.4", expect=2)
    assert "(threshold differs)" in err["error"]  # other options: refused the same way
    result = CliRunner().invoke(app, ["train-seg", "--diffusion", str(trained["root"] / "stage1"), "--data",
                                      str(trained["root"] / "train"), "--config", "tiny", "--out", str(model),
                                      "--classes", "scratch,hole", "--max-steps", "6", "--resume", "--json"])
    assert result.exit_code == 0, result.output
    err = predict("--model", str(model), *args, expect=2)
    assert "another model" in err["error"] and "weights_sha256" in err["error"] and "--overwrite" in err["error"]
    again = predict("--model", str(model), *args, "--overwrite")
    assert again["images"] == 11 and again["skipped_done"] == 0 and again["step"] == 6
    assert json.loads((out / "meta.json").read_text())["step"] == 6 and len(check_predictions(out)) == 11
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    err = predict("--model", str(model), *args[:-2], "--out", str(other), "--overwrite", expect=2)
    assert "not written by predict" in err["error"] and (other / "notes.txt").is_file()


def test_the_clip_ensemble_takes_a_clip_text_tower_given_with_clip(trained, tmp_path):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from imdd_models.components.presets import TINY_TEXT, TINY_VISION
    args = ["--model", str(trained["model"]), "--classes", "hole,crack", "--data", str(trained["test"]),
            "--split", "test", "--limit", "3"]
    off = predict(*args, "--out", str(tmp_path / "off"))
    assert off["ensemble"]["on"] is False and "--clip" in off["ensemble"]["reason"]
    tower = tmp_path / "clip"
    CLIPTextModelWithProjection(CLIPTextConfig(**{**TINY_TEXT, "projection_dim": TINY_VISION["projection_dim"]})
                                ).save_pretrained(str(tower))
    on = predict(*args, "--out", str(tmp_path / "on"), "--clip", str(tower))
    assert on["ensemble"]["on"] is True and on["ensemble"]["clip_alpha"] == 0.35 and on["unseen_classes"] == ["crack"]
    assert json.loads((tmp_path / "on" / "meta.json").read_text())["ensemble"]["clip_text"] == str(tower.resolve())
    check_predictions(tmp_path / "on")
    err = predict(*args, "--out", str(tmp_path / "x"), "--clip", str(tmp_path / "nowhere"), expect=2)
    assert "not a saved CLIP model" in err["error"]


def test_a_signal_keeps_every_finished_image_and_the_same_command_completes_the_folder(trained, tmp_path,
                                                                                      monkeypatch):
    """Ctrl-C mid-run: the batch in flight is written, the run stops with a --json line (`stopped`, the command to
    rerun) and exit 130; rerunning it predicts only the rest, and the folder is byte-identical to an
    uninterrupted run's. A real SIGINT to this process, sent while the third image is written."""
    import os
    import signal

    from imdd_models.segmentation.folder import PredictionsWriter
    common = ["--model", str(trained["model"]), "--classes", "scratch,hole,crack", "--data", str(trained["test"]),
              "--split", "test", "--batch-size", "2", "--writers", "0"]
    straight = predict(*common, "--out", str(tmp_path / "straight"))
    real_add, added = PredictionsWriter.add, []

    def add_then_signal(self, record, maps):
        added.append(record["key"])
        if len(added) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real_add(self, record, maps)

    monkeypatch.setattr(PredictionsWriter, "add", add_then_signal)
    out = tmp_path / "stopped"
    stopped = predict(*common, "--out", str(out), expect=130)
    monkeypatch.setattr(PredictionsWriter, "add", real_add)
    assert stopped["stopped"] == "SIGINT" and stopped["images"] == 4  # the batch in flight (images 3-4) finished
    assert stopped["resume_command"].startswith("imdd-models predict --model ") and "--json" not in stopped[
        "resume_command"]
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 4
    import shlex
    argv = shlex.split(stopped["resume_command"])  # the same command, as printed
    assert argv[:2] == ["imdd-models", "predict"]
    rest = predict(*argv[2:])
    assert rest["stopped"] is None and rest["skipped_done"] == 4 and rest["images"] == straight["images"] - 4
    assert _files(out) == _files(tmp_path / "straight")


def test_split_and_where_do_not_apply_to_image_files(trained, tmp_path):
    image = tmp_path / "part.png"
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(image)
    err = predict(str(image), "--model", str(trained["model"]), "--classes", "scratch", "--out",
                  str(tmp_path / "out"), "--split", "train", expect=2)
    assert err["error"] == "--split and --where choose records of --data; they do not apply to image files"
    assert not (tmp_path / "out").exists()


def test_camera_orientation_16_bit_duplicates_and_folders_among_image_files(trained, tmp_path):
    """A JPEG with an EXIF rotation (most phone shots) crashed the overlay (the map follows the rotated image,
    the overlay was drawn on the unrotated one); a 16-bit PNG's overlay came out white; a file given twice read
    as a resume; a folder among the files was "no such image file"."""
    from PIL import Image as PILImage
    rotated = tmp_path / "phone.jpg"
    exif = PILImage.Exif()
    exif[274] = 6  # rotate 90 degrees clockwise when displayed
    PILImage.fromarray(np.full((200, 300, 3), 90, np.uint8)).save(rotated, exif=exif)
    deep = tmp_path / "sensor16.png"
    PILImage.fromarray(np.full((120, 160), 32768, np.uint16)).save(deep)
    out = tmp_path / "out"
    s = predict(str(rotated), str(deep), f"{tmp_path}/./phone.jpg", "--model", str(trained["model"]), "--classes",
                "scratch", "--out", str(out), "--writers", "0")
    assert s["images"] == 2 and s["skipped_done"] == 0 and s["duplicate_inputs"] == 1
    lines = {Path(x["key"]).name: x for x in check_predictions(out)}
    overlays = {name: PILImage.open(out / "overlays" / f"{Path(line['anomaly_map']).stem}.png")
                for name, line in lines.items()}
    assert overlays["phone.jpg"].size == (200, 300)  # as displayed (EXIF applied), the size the map follows
    from imdd_models.data import ReadStats
    from imdd_models.segmentation.predict import image_inputs
    base = next(image_inputs([deep], ReadStats()))["original"]  # what the overlay is drawn on
    assert base.mode == "L" and set(np.unique(np.asarray(base))) == {128}  # 32768 of 65535 (convert("RGB"): 255)
    err = predict(str(tmp_path), "--model", str(trained["model"]), "--classes", "scratch", "--out",
                  str(tmp_path / "o2"), expect=2)
    assert err["error"] == f"{tmp_path}: a folder; give its image files (e.g. {tmp_path}/*.png)"
