"""Compression end to end on a tiny random model, the CLI, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_processor, tiny_whisper_model

from lite_whisper.api import load_model
from lite_whisper.calibration.calibrate import calibrate
from lite_whisper.cli import main
from lite_whisper.compression.compress import compress
from lite_whisper.compression.config import CompressionConfig
from lite_whisper.data.features import encoder_frames
from lite_whisper.lowrank.checkpoint import save_lite_whisper
from lite_whisper.lowrank.cost import encoder_flops
from lite_whisper.lowrank.modeling_lite_whisper import LowRankLinear


@pytest.fixture
def tiny_pair():
    return tiny_whisper_model(vocab_size=51864), tiny_processor()


def test_threshold_parsing():
    assert CompressionConfig.parse("0.99:0.999") == CompressionConfig(0.99, 0.999)
    assert CompressionConfig.parse(0.95) == CompressionConfig(0.95, 0.95)
    assert CompressionConfig.parse("1").label == "robust-1"  # the default rule since issue 9
    assert CompressionConfig.parse("1", rank_rule="paper").label == "1"
    assert CompressionConfig(0.9, 0.95).threshold_for("k_proj") == 0.9
    assert CompressionConfig(0.9, 0.95).threshold_for("fc2") == 0.95
    for bad in ("", "0.9:", "abc", "0.9:0.9:0.9"):
        with pytest.raises(ValueError, match="expected a number like 0.99"):
            CompressionConfig.parse(bad)
    for bad in ("0", "1.5", "-0.1:0.9", "0.9:0"):
        with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
            CompressionConfig.parse(bad)


def test_encoder_frames():
    assert encoder_frames(16000) == 50  # 1 s = 100 mel frames = 50 encoder frames
    assert encoder_frames(161) == 1
    assert encoder_frames(60 * 16000) == 1500  # cut to Whisper's 30 s window


def test_compress_end_to_end(tiny_pair, calibration_folder, tmp_path):
    model, processor = tiny_pair
    statistics = calibrate(model, processor, calibration_folder, batch_size=4, progress=False)
    assert statistics.calibration_clips == 6
    assert statistics.calibration_frames == sum(encoder_frames(16000 * (1 + i % 3)) for i in range(6))

    # Full variance (threshold 1): nothing can be cut, every layer stays dense and says why.
    with pytest.warns(UserWarning, match="only 6 calibration clips"):  # a small set is named, not refused
        lite, report = compress(model, statistics, CompressionConfig.parse("1"))
    assert report.encoder_params_after == report.encoder_params_before
    assert all(entry.rank is None and "not reached" in entry.reason for layer in report.layers for entry in layer.values())

    lite, report = compress(model, statistics, CompressionConfig.parse("0.5:0.6"))
    ranks = [entry.rank for layer in report.layers for entry in layer.values()]
    assert all(rank is not None and rank % 16 == 0 for rank in ranks)
    # parameters by hand from the ranks: each factorised linear trades d_in*d_out (+ its bias) for
    # rank*(d_in + d_out) + d_out (k_proj, which has no bias, gains one)
    saved = sum(
        entry.d_in * entry.d_out + (0 if name == "k_proj" else entry.d_out) - entry.rank * (entry.d_in + entry.d_out) - entry.d_out
        for layer in report.layers for name, entry in layer.items()
    )
    assert report.encoder_params_after == report.encoder_params_before - saved < report.encoder_params_before
    assert report.encoder_flops_after == encoder_flops(lite) < encoder_flops(model)
    assert sum(isinstance(m, LowRankLinear) for m in lite.modules()) == len(ranks)

    # The saved folder loads through load_model and gives the same logits as in memory.
    folder = save_lite_whisper(lite, processor, tmp_path / "lite", dtype=torch.float32)
    loaded, _ = load_model(folder)
    features = torch.randn(1, 80, 3000)
    tokens = torch.tensor([[50257, 50362]])
    with torch.inference_mode():
        expected = lite(input_features=features, decoder_input_ids=tokens).logits
        actual = loaded(input_features=features, decoder_input_ids=tokens).logits
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_more_variance_kept_means_closer_outputs(tiny_pair, calibration_folder):
    model, processor = tiny_pair
    statistics = calibrate(model, processor, calibration_folder, progress=False)
    features = processor.feature_extractor([0.1 * np.random.default_rng(1).standard_normal(32000).astype(np.float32)],
                                           sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        dense = model.get_encoder()(features).last_hidden_state
        errors = []
        for threshold in ("0.5", "0.8", "0.95"):
            lite, _ = compress(model, statistics, CompressionConfig.parse(threshold))
            out = lite.get_encoder()(features).last_hidden_state
            errors.append(float((out - dense).norm() / dense.norm()))
    assert errors[0] > errors[1] > errors[2], errors


def test_statistics_from_another_model_are_refused(tiny_pair, calibration_folder):
    model, processor = tiny_pair
    statistics = calibrate(model, processor, calibration_folder, progress=False)
    other = tiny_whisper_model(vocab_size=51864, d_model=32, encoder_ffn_dim=128)
    with pytest.raises(ValueError, match="statistics were collected on a model with d_model=64"):
        compress(other, statistics, CompressionConfig())


def test_calibration_without_usable_audio(tiny_pair, tmp_path):
    model, processor = tiny_pair
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.wav").write_bytes(b"not a wav file")
    (folder / "b.flac").write_bytes(b"")
    with pytest.warns(UserWarning, match="skipping"):
        with pytest.raises(ValueError, match="no usable audio"):
            calibrate(model, processor, folder, progress=False)


def _save_tiny_model(tmp_path):
    from lite_whisper.models.loading import save_model

    return save_model(tiny_whisper_model(vocab_size=51864), tiny_processor(), tmp_path / "dense")


def test_cli_compress_stats_reuse_and_inspect(tmp_path, calibration_folder, capsys):
    dense = _save_tiny_model(tmp_path)
    stats = tmp_path / "tiny.stats"
    out = tmp_path / "lite-a"
    args = ["compress", str(dense), "--calibration", str(calibration_folder), "--threshold", "0.6:0.7",
            "--stats", str(stats), "--no-progress", "-o", str(out)]
    assert main(args) == 0
    assert stats.exists()
    report = json.loads((out / "compression_report.json").read_text())
    for key in ("encoder_params_before", "encoder_params_after", "encoder_flops_before", "encoder_flops_after",
                "calibration_clips", "calibration_frames", "threshold", "layers", "wall_seconds", "peak_rss_mb"):
        assert key in report
    # 6 clips and, by default, a degraded copy of each (docs/RESULTS.md §10)
    assert report["calibration_clips"] == 12 and report["threshold"] == "robust-0.6:0.7"
    assert report["calibration_data"].endswith("+1 degraded copy per clip (seed 0)")
    assert report["wall_seconds"] > 0 and report["peak_rss_mb"] > 0
    assert set(report["layers"][0]) == {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"}
    assert {"rank", "explained_variance"} <= set(report["layers"][0]["fc1"])

    # Second compression reuses the statistics file: no calibration data needed at all.
    out_b = tmp_path / "lite-b"
    assert main(["compress", str(dense), "--calibration", str(tmp_path / "nowhere"), "--threshold", "0.5",
                 "--stats", str(stats), "--no-progress", "-o", str(out_b)]) == 0
    report_b = json.loads((out_b / "compression_report.json").read_text())
    assert report_b["calibration_clips"] == 12
    card = (out_b / "README.md").read_text()  # the model card, from the report
    after = report_b["encoder_params_after"] / report_b["encoder_params_before"]
    assert "| encoder parameters |" in card and f"| {after:.2f} |" in card and "calibration: 12 clips" in card
    # --augment 0: the clean clips alone
    assert main(["compress", str(dense), "--calibration", str(calibration_folder), "--threshold", "0.5", "--augment", "0",
                 "--no-progress", "-o", str(tmp_path / "lite-clean")]) == 0
    clean = json.loads((tmp_path / "lite-clean" / "compression_report.json").read_text())
    assert clean["calibration_clips"] == 6 and "degraded" not in clean["calibration_data"]

    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["encoder_params_after"] == report["encoder_params_after"]


def test_cli_compress_bad_input(tmp_path, calibration_folder, capsys):
    dense = _save_tiny_model(tmp_path)
    existing = tmp_path / "taken"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    assert main(["compress", str(dense), "--calibration", str(calibration_folder), "-o", str(existing)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (existing / "keep.txt").read_text() == "mine"

    out = tmp_path / "never"
    assert main(["compress", str(dense), "--calibration", str(calibration_folder), "--threshold", "1.2", "-o", str(out)]) == 2
    assert "must be in (0, 1]" in capsys.readouterr().err
    assert main(["compress", str(dense), "--calibration", str(calibration_folder), "--threshold", "x:y", "-o", str(out)]) == 2
    assert "expected a number" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compress", str(dense), "--calibration", str(empty), "-o", str(out)]) == 2
    assert "contains no audio files" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".never*"))  # nothing half-written


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="peak RSS reset needs Linux /proc")
def test_factorising_memory_does_not_grow_with_the_number_of_layers():
    # Each (layer, linear) is derived, decomposed and freed before the next: with 8 layers the
    # transient peak (peak rise minus the factors kept) stays that of 2. Deriving every layer's
    # moments first would add ~40 MiB per layer here (fc1's 2048 x 2048 float64 alone is 32 MiB).
    def transient(layers: int) -> float:
        # big blocks mmapped and unmapped when freed, one arena: resident memory follows live allocations
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "1"}
        env.pop("GLIBC_TUNABLES", None)
        result = subprocess.run([sys.executable, str(Path(__file__).parent / "peak_memory_probe.py"), str(layers), "0.5"],
                                capture_output=True, text=True, check=True, cwd=Path(__file__).parent, env=env)
        peak_rise, kept = map(float, result.stdout.split())
        return peak_rise - kept

    assert transient(8) < transient(2) + 20
