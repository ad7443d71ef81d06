"""Distillation of the low-rank factors toward the dense encoder (tiny random models)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_processor, tiny_whisper_model

from lite_whisper.calibration.calibrate import calibrate
from lite_whisper.compression.compress import compress
from lite_whisper.compression.config import CompressionConfig
from lite_whisper.compression.distill import DistillConfig, distill, factor_parameters, relative_error
from lite_whisper.data.datasets import load_dataset
from lite_whisper.data.features import first_clips_features
from lite_whisper.lowrank.cost import encoder_of


@pytest.fixture
def compressed(calibration_folder):
    model = tiny_whisper_model()
    processor = tiny_processor()
    dataset = load_dataset(calibration_folder)
    statistics = calibrate(model, processor, dataset, progress=False)
    lite, _ = compress(model, statistics, CompressionConfig.parse("0.6"))  # lossy on purpose: room to learn
    features = first_clips_features(dataset, processor, 6)
    return model, lite, features


def encoder_error(model, lite, features) -> float:
    with torch.inference_mode():
        return float(relative_error(encoder_of(lite)(features).last_hidden_state,
                                    encoder_of(model)(features).last_hidden_state))


def test_distillation_lowers_the_loss_and_leaves_the_teacher_alone(compressed):
    model, lite, features = compressed
    teacher_state = {name: value.clone() for name, value in model.state_dict().items()}
    flags = {name: p.requires_grad for name, p in lite.named_parameters()}
    dense_storage = {q.data_ptr() for q in model.parameters()}
    shared = [name for name, p in lite.named_parameters() if p.data_ptr() in dense_storage]
    assert shared, "the lite model shares its non-factor weights with the dense one (why the teacher needs care)"
    before = encoder_error(model, lite, features)
    report = distill(lite, model, features, DistillConfig(steps=30, learning_rate=3e-3, batch_size=2,
                                                          holdout_clips=0))
    after = encoder_error(model, lite, features)
    assert after < 0.8 * before, (before, after)
    assert report.loss_last < report.loss_first
    for name, value in model.state_dict().items():  # every teacher tensor bit for bit as before
        assert torch.equal(value, teacher_state[name]), name
    assert {name: p.requires_grad for name, p in lite.named_parameters()} == flags
    assert report.steps == 30 and report.train_clips == 6 and report.best_step == 30


def test_distillation_keeps_the_best_held_out_step(compressed):
    model, lite, features = compressed
    untrained = [p.detach().clone() for p in factor_parameters(lite)]
    # a learning rate far too high: the held-out loss only gets worse, so the untrained factors are kept
    report = distill(lite, model, features, DistillConfig(steps=6, learning_rate=10.0, batch_size=2,
                                                          holdout_clips=2, evaluations=3, warmup_steps=1))
    assert report.holdout_clips == 1 and report.train_clips == 5  # at most a quarter is held out
    assert report.best_step == 0 and report.holdout_after == report.holdout_before
    assert all(torch.equal(p, q) for p, q in zip(factor_parameters(lite), untrained))


def test_distillation_is_deterministic(calibration_folder):
    results = []
    for _ in range(2):
        model = tiny_whisper_model()
        processor = tiny_processor()
        dataset = load_dataset(calibration_folder)
        lite, _ = compress(model, calibrate(model, processor, dataset, progress=False), CompressionConfig.parse("0.6"))
        distill(lite, model, first_clips_features(dataset, processor, 6),
                DistillConfig(steps=4, learning_rate=1e-3, batch_size=2, holdout_clips=0, seed=3))
        results.append([p.detach().clone() for p in factor_parameters(lite)])
    assert all(torch.equal(p, q) for p, q in zip(*results))


def test_distillation_refuses_what_it_cannot_do(compressed):
    model, lite, features = compressed
    with pytest.raises(ValueError, match="no low-rank linears"):
        distill(model, model, features, DistillConfig(steps=1))
    for bad in (dict(steps=-1), dict(learning_rate=0.0), dict(batch_size=0), dict(evaluations=0)):
        with pytest.raises(ValueError):
            DistillConfig(**bad)


def test_cli_compress_with_distillation(tmp_path, calibration_folder, capsys):
    from test_compress import _save_tiny_model

    from lite_whisper.cli import main

    dense = _save_tiny_model(tmp_path)
    stats = tmp_path / "tiny.stats"
    out = tmp_path / "lite"
    assert main(["compress", str(dense), "--calibration", str(calibration_folder), "--threshold", "0.6",
                 "--stats", str(stats), "--distill-steps", "3", "--distill-batch-size", "2", "--no-progress",
                 "-o", str(out)]) == 0
    report = json.loads((out / "compression_report.json").read_text())
    # 6 clips and, by default, a degraded copy of each: 12, less the held-out ones
    assert report["distillation"]["steps"] == 3 and report["distillation"]["train_clips"] == 9
    assert report["distillation"]["config"]["batch_size"] == 2
    assert "distillation: 3 steps" in capsys.readouterr().out
    # distillation needs the audio itself, even when statistics exist
    assert main(["compress", str(dense), "--calibration", str(tmp_path / "nowhere"), "--stats", str(stats),
                 "--distill-steps", "3", "--no-progress", "-o", str(tmp_path / "never")]) == 2
    assert "nowhere" in capsys.readouterr().err
    for bad, message in ((["--distill-steps", "-1"], "steps must be 0 or more"),
                         (["--distill-lr", "0"], "learning rate must be positive"),
                         (["--distill-batch-size", "0"], "--distill-batch-size")):
        assert main(["compress", str(dense), "--calibration", str(calibration_folder), *bad,
                     "-o", str(tmp_path / "never")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_distillation_reads_only_the_clips_its_steps_draw():
    assert DistillConfig(steps=0).clips == 0
    assert DistillConfig(steps=32).clips == 32 * 4 + 8  # each drawn once, and the held-out clips
    assert DistillConfig(steps=128).clips == 256  # capped by max_clips: clips come round again
    assert DistillConfig(steps=10, batch_size=2, holdout_clips=0, max_clips=5).clips == 5


def test_a_size_target_distills_by_default_and_a_threshold_does_not(tmp_path, calibration_folder, capsys,
                                                                     monkeypatch):
    from test_compress import _save_tiny_model

    from lite_whisper.cli import main
    from lite_whisper.cli.compress import DEFAULT_DISTILL_STEPS

    dense = _save_tiny_model(tmp_path)
    stats = tmp_path / "tiny.stats"

    def distillation(*flags) -> dict | None:
        out = tmp_path / f"lite-{len(list(tmp_path.iterdir()))}"
        assert main(["compress", str(dense), "--stats", str(stats), "--no-progress", "-o", str(out), *flags]) == 0
        return json.loads((out / "compression_report.json").read_text())["distillation"]

    calibration = ["--calibration", str(calibration_folder)]
    assert distillation(*calibration, "--target-params", "0.8")["steps"] == DEFAULT_DISTILL_STEPS == 32
    assert distillation(*calibration, "--threshold", "0.6") is None  # the paper's method as it is
    assert distillation(*calibration, "--target-params", "0.8", "--distill-steps", "0") is None
    # statistics and no audio anywhere: the default distillation steps aside, and says so
    monkeypatch.setenv("LITE_WHISPER_SPEECH", str(tmp_path / "no-speech"))
    capsys.readouterr()
    assert distillation("--target-params", "0.8") is None
    assert "without the default distillation" in capsys.readouterr().err
