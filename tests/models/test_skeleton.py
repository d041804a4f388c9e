"""The skeleton other model-side work builds on: the CLI, tiny components written and loaded, the shard reader."""

from __future__ import annotations

import json

from PIL import Image
from typer.testing import CliRunner

from imdd_models.cli import app
from imdd_models.components import load_components
from imdd_models.data import ReadStats, iter_raw, iter_records, resolve


def test_components_cli_writes_the_diffusers_layout(tmp_path):
    out = tmp_path / "comps"
    result = CliRunner().invoke(app, ["components", "--preset", "tiny", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["preset"] == "tiny" and summary["vae_scale_factor"] == 8 and summary["latent_channels"] == 4
    for sub in ("vae", "text_encoder", "tokenizer", "image_encoder", "feature_extractor", "scheduler", "unet"):
        assert (out / sub).is_dir(), sub
    scheduler = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert (scheduler["beta_schedule"], scheduler["beta_start"], scheduler["beta_end"]) == ("scaled_linear", 0.00085, 0.012)


def test_components_bad_preset_is_one_error_line(tmp_path):
    result = CliRunner().invoke(app, ["components", "--preset", "huge", "--out", str(tmp_path / "x"), "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout.strip().splitlines()[-1])["error"].startswith("unknown preset 'huge'")


def test_tiny_components_load_and_keep_the_sd_factors(tiny_components):
    comps = load_components(tiny_components)
    assert not any(p.requires_grad for p in comps.vae.parameters())
    images = [Image.new("RGB", (512, 512), (120, 60, 30)), Image.new("L", (512, 512), 200)]
    latents = comps.encode_latents(comps.pixels(images))
    assert latents.shape == (2, 4, comps.resolution // 8, comps.resolution // 8)
    assert comps.image_embeds(images).shape == (2, 512)
    ids = comps.tokenize(["a photo of a cat"])
    assert ids.shape == (1, 77) and ids[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]  # real CLIP BPE
    states, pooled = comps.text_states(ids)
    assert states.shape == (1, 77, comps.unet_config["cross_attention_dim"]) and pooled.shape == (1, states.shape[-1])


def test_reader_reads_parquet_and_webdataset_alike(demo_shards):
    by_format = {}
    for fmt in ("parquet", "webdataset"):
        stats = ReadStats()
        records = list(iter_records(resolve(demo_shards, fmt=fmt), stats=stats))
        assert stats.read == 42 and stats.bad == 0
        by_format[fmt] = {r["key"]: r for r in records}
    assert by_format["parquet"].keys() == by_format["webdataset"].keys()
    key = next(k for k, r in by_format["parquet"].items() if r["label"] == "defective")
    a, b = by_format["parquet"][key], by_format["webdataset"][key]
    assert a["caption"] == b["caption"] and a["defect_types"] == b["defect_types"] and a["boxes"]
    assert a["image"].size == (512, 512) and a["mask"].mode == "L"
    assert a["image"].tobytes() == b["image"].tobytes()


def test_reader_filters_by_split_and_where(demo_shards):
    train = list(iter_raw(demo_shards, split="train"))
    assert len(train) == 18 and {r["split"] for r in train} == {"train"}
    defective = list(iter_raw(demo_shards, where="label=defective,split=test"))
    assert len(defective) == 18 and all(r["label"] == "defective" for r in defective)
    assert len(list(iter_raw(demo_shards, where="label!=defective"))) == 24


def test_reader_reads_tar_paths_with_brace_patterns(demo_shards):
    pattern = str(demo_shards / "webdataset" / "{train,test}-000000.tar")
    assert len(list(iter_raw(pattern))) == 42


def test_reader_reads_a_folder_through_datasets_load_dataset(demo_shards):
    # A folder path that is not given as a shard folder goes through datasets.load_dataset(streaming=True),
    # the same path a Hub id takes.
    from imdd_models.data.sources import _hub_shards
    source = _hub_shards(str(demo_shards), "test")
    rows = list(iter_raw(source))
    assert len(rows) == 24 and rows[0]["image_bytes"][:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0")


def test_imdd_build_stays_torch_free():
    import subprocess
    import sys
    code = ("import sys, imdd_build.cli, imdd_build.shard, imdd_build.ingest; "
            "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sd15_preset_loads_frozen_parts_with_from_pretrained_from_local_folders(tiny_components, tmp_path):
    # Offline stand-in for the hub ids: a folder with vae/, text_encoder/, image_encoder/ subfolders.
    out = tmp_path / "sd15"
    result = CliRunner().invoke(app, ["components", "--preset", "sd15", "--out", str(out), "--vae", str(tiny_components),
                                      "--text-encoder", str(tiny_components), "--image-encoder",
                                      str(tiny_components), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["vae"] == str(tiny_components) and summary["tokenizer"] == str(tiny_components)
    unet = json.loads((out / "unet" / "config.json").read_text())
    assert unet["block_out_channels"] == [320, 640, 1280, 1280] and unet["cross_attention_dim"] == 32
    comps = load_components(out)
    assert comps.tokenize(["a cat"])[0, :4].tolist() == [49406, 320, 2368, 49407]
    missing = CliRunner().invoke(app, ["components", "--preset", "sd15", "--out", str(tmp_path / "x"), "--vae",
                                       str(tmp_path / "nowhere"), "--json"])
    assert missing.exit_code == 2 and "cannot load AutoencoderKL" in missing.stdout
