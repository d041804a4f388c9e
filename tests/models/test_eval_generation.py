"""FID/KID/IS (torchmetrics) against scipy/numpy references, and `imdd-models evaluate-generation` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg
from typer.testing import CliRunner

from imdd_models.cli import app
from imdd_models.data import iter_records
from imdd_models.evaluation.generation import metrics_from_features, sample_warnings


def _fid_reference(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def _kid_reference(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel (x.y/d + 1)^3, over all samples."""
    d, m = a.shape[1], len(a)
    k = lambda x, y: (x @ y.T / d + 1) ** 3  # noqa: E731
    kaa, kbb, kab = k(a, a), k(b, b), k(a, b)
    return float((kaa.sum() - np.trace(kaa)) / (m * (m - 1)) + (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
                 - 2 * kab.mean())


def _is_reference(logits: np.ndarray) -> float:
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    marginal = p.mean(0)
    return float(np.exp((p * (np.log(p) - np.log(marginal))).sum(1).mean()))


def test_fid_kid_is_match_references():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(60, 6))
    fake = rng.normal(0.4, 1.3, size=(60, 6)) @ rng.normal(size=(6, 6)) * 0.5
    logits = rng.normal(size=(60, 5)) * 2
    out = metrics_from_features(torch.from_numpy(real), torch.from_numpy(fake), torch.from_numpy(logits),
                                kid_subset_size=1000, kid_subsets=1, is_splits=1)
    assert out["fid"] == pytest.approx(_fid_reference(real, fake), rel=1e-6)
    assert out["kid_subset_size"] == 60  # capped at the sample count: one subset = every sample
    assert out["kid"] == pytest.approx(_kid_reference(real, fake), rel=1e-6)
    assert out["inception_score_std"] is None  # undefined over one split: null, never NaN in JSON
    assert out["inception_score"] == pytest.approx(_is_reference(logits), rel=1e-5)
    same = metrics_from_features(torch.from_numpy(real), torch.from_numpy(real), torch.from_numpy(logits))
    assert same["fid"] == pytest.approx(0.0, abs=1e-6)


def test_sample_warnings():
    assert any("singular" in w for w in sample_warnings(100, 50, 2048))
    assert any("~1.3k" in w for w in sample_warnings(20_000, 1300, 64))
    assert sample_warnings(20_000, 12_000, 2048) == []


class TinyNet(torch.nn.Module):
    """A random 'Inception': logits from forward(x), pooled features with return_features=True."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 12, 3, stride=2)
        self.head = torch.nn.Linear(12, 5)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        features = torch.relu(self.conv(x / 255.0)).mean(dim=(2, 3))
        return features if return_features else self.head(features)


def _pixels(image: Image.Image, size: int) -> torch.Tensor:
    array = np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC))
    return torch.from_numpy(array).permute(2, 0, 1).float()[None]


def test_evaluate_generation_cli(demo_shards, tmp_path):
    weights = tmp_path / "tiny.pt"
    net = torch.jit.script(TinyNet())
    torch.jit.save(net, str(weights))
    generated = tmp_path / "gen"
    (generated / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(10):  # fewer than the 12 feature dimensions: a singular covariance
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(generated / ("sub" if i % 2 else "")
                                                                                 / f"{i:03d}.png")
    runner = CliRunner()
    args = ["evaluate-generation", "--real", str(demo_shards), "--generated", str(generated), "--split", "test",
            "--feature-weights", str(weights), "--image-size", "32", "--batch-size", "5", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert (out["real_images"], out["generated_images"], out["feature_dim"]) == (24, 10, 12)
    assert "singular" in result.stderr and any("~1.3k" in w for w in out["warnings"])
    with torch.no_grad():  # the same features computed here, image by image, and scipy's FID
        real = torch.cat([net(_pixels(r["image"], 32), True) for r in iter_records(str(demo_shards), "test")])
        fake = torch.cat([net(_pixels(Image.open(p), 32), True) for p in sorted(generated.rglob("*.png"))])
    assert out["fid"] == pytest.approx(_fid_reference(real.double().numpy(), fake.double().numpy()), rel=1e-4)
    assert out["kid_subset_size"] == 10 and out["inception_score"] >= 1.0
    again = json.loads(runner.invoke(app, args).stdout.strip().splitlines()[-1])
    assert again["kid"] == out["kid"] and again["inception_score"] == out["inception_score"]  # seeded


def test_evaluate_generation_errors(demo_shards, tmp_path):
    runner = CliRunner()
    base = ["evaluate-generation", "--real", str(demo_shards), "--generated", str(tmp_path), "--json"]
    result = runner.invoke(app, base)
    assert result.exit_code == 2 and "--feature-weights is required" in json.loads(result.stdout.splitlines()[-1])["error"]
    bogus = tmp_path / "weights.pt"
    bogus.write_bytes(b"not a model")
    result = runner.invoke(app, [*base, "--feature-weights", str(bogus)])
    assert result.exit_code == 2 and "not a TorchScript archive" in json.loads(result.stdout.splitlines()[-1])["error"]


def test_torch_export_program(demo_shards, tmp_path):
    """A `.pt2` from torch.export (TorchScript's successor): net(x) gives both features and logits."""
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(TinyNet(), (torch.zeros(2, 3, 32, 32),), dynamic_shapes=({0: batch},))
    weights = tmp_path / "tiny.pt2"
    torch.export.save(program, str(weights))
    generated = tmp_path / "gen"
    generated.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 40), (i * 80, 20, 200)).save(generated / f"{i}.png")
    result = CliRunner().invoke(app, ["evaluate-generation", "--real", str(demo_shards), "--generated", str(generated),
                                      "--feature-weights", str(weights), "--image-size", "32", "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert (out["real_images"], out["generated_images"], out["feature_dim"]) == (42, 3, 5)
    assert out["fid"] > 0


def _is_reference_probs(p: np.ndarray) -> float:
    """IS straight from the definition: exp(E_x KL(p(y|x) || p(y))), on probabilities."""
    marginal = p.mean(0)
    kl = (p * (np.log(np.clip(p, 1e-30, None)) - np.log(np.clip(marginal, 1e-30, None)))).sum(1)
    return float(np.exp(kl.mean()))


class ProbNet(torch.nn.Module):
    """Like NVlabs' Inception export: net(x) returns class PROBABILITIES (softmax applied), features on request."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 12, 3, stride=2)
        self.register_buffer("centres", torch.arange(40, dtype=torch.float32))

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        if return_features:
            return torch.relu(self.conv(x / 255.0)).mean(dim=(2, 3))
        grey = (x / 255.0).mean(dim=(1, 2, 3)) * 39.0  # the class: the image's brightness in 40 steps
        return torch.softmax(-(grey[:, None] - self.centres[None]) ** 2, dim=1)


def test_inception_score_of_a_probability_network(demo_shards, tmp_path):
    weights = tmp_path / "probs.pt"
    net = torch.jit.script(ProbNet())
    torch.jit.save(net, str(weights))
    generated = tmp_path / "gen"
    generated.mkdir()
    rng = np.random.default_rng(3)
    for i in range(12):  # plain colours of different brightness: different classes
        Image.new("RGB", (48, 48), tuple(int(v) for v in rng.integers(0, 256, 3))).save(generated / f"{i:02d}.png")
    with torch.no_grad():
        probs = torch.cat([net(_pixels(Image.open(p), 32)) for p in sorted(generated.glob("*.png"))])
    reference = _is_reference_probs(probs.double().numpy())
    assert reference > 2.0  # a network whose IS is far from 1
    base = ["evaluate-generation", "--real", str(demo_shards), "--generated", str(generated), "--split", "test",
            "--feature-weights", str(weights), "--image-size", "32", "--is-splits", "1", "--json"]
    runner = CliRunner()
    for declared in ([], ["--feature-output", "probs"]):
        result = runner.invoke(app, base + declared)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        out = json.loads(result.stdout.strip().splitlines()[-1])
        assert out["feature_output"] == "probs"
        assert out["inception_score"] == pytest.approx(reference, rel=1e-4)
    # declared logits: the old, wrong reading (a softmax of probabilities) is what the user asked for
    out = json.loads(runner.invoke(app, base + ["--feature-output", "logits"]).stdout.strip().splitlines()[-1])
    assert out["feature_output"] == "logits" and out["inception_score"] < reference / 1.5


def test_probs_declared_for_a_logits_network_is_refused(demo_shards, tmp_path):
    weights = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(TinyNet()), str(weights))
    generated = tmp_path / "gen"
    generated.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 40), (i * 80, 20, 200)).save(generated / f"{i}.png")
    result = CliRunner().invoke(app, ["evaluate-generation", "--real", str(demo_shards), "--generated",
                                      str(generated), "--feature-weights", str(weights), "--image-size", "32",
                                      "--feature-output", "probs", "--json"])
    assert result.exit_code == 2
    assert "not probabilities" in json.loads(result.stdout.splitlines()[-1])["error"]


def test_class_logits_detects_probabilities():
    from imdd_models.evaluation.generation import class_logits
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(1000, 0.01), size=200)  # peaked: reference IS in the hundreds
    reference = _is_reference_probs(p)
    logits, kind = class_logits(torch.from_numpy(p))
    assert kind == "probs"
    out = metrics_from_features(torch.zeros(4, 2).normal_(), torch.zeros(4, 2).normal_(), logits, is_splits=1)
    assert reference > 20 and out["inception_score"] == pytest.approx(reference, rel=1e-4)
    assert class_logits(torch.from_numpy(np.log(p)))[1] == "logits"
