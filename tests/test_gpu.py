"""--device cuda for real: calibration, compression, transcription and bench on a GPU.

Skipped where torch sees no CUDA device (this project's CI machines have none); run on a GPU
machine with `pytest tests/test_gpu.py`. Skips here are not coverage: the note on the issue says
where they last ran.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_english_model, tiny_processor, tiny_whisper_model

from lite_whisper.calibration.calibrate import calibrate
from lite_whisper.compression.compress import compress
from lite_whisper.compression.config import CompressionConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def no_tf32(monkeypatch):
    """float32 as float32: cuDNN (the conv stem) and cuBLAS would otherwise round to TF32 (10-bit mantissa)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


@pytest.mark.parametrize("compute_dtype", [None, torch.float16, torch.bfloat16])
def test_calibration_on_cuda_matches_the_cpu(calibration_folder, compute_dtype, no_tf32):
    processor = tiny_processor()
    cpu = calibrate(tiny_whisper_model(), processor, str(calibration_folder), progress=False)
    gpu = calibrate(tiny_whisper_model().cuda(), processor, str(calibration_folder), progress=False,
                    compute_dtype=compute_dtype)
    assert all(m.outer.device.type == "cuda" and m.outer.dtype == torch.float64 for m in gpu.moments.values())
    bound = 1e-4 if compute_dtype is None else 0.2  # TF32-free float32, or half-precision compute
    for key, moments in cpu.moments.items():
        other = gpu.moments[key]
        error = float((other.covariance().cpu() - moments.covariance()).norm() / moments.covariance().norm())
        assert error < bound, (key, error)
    lite, report = compress(tiny_whisper_model().cuda(), gpu, CompressionConfig.parse("0.6"))
    assert next(lite.parameters()).device.type == "cuda"
    assert report.encoder_params_after < report.encoder_params_before


def test_transcription_and_bench_on_cuda(no_tf32):
    from lite_whisper.api import transcribe
    from lite_whisper.benchmark.bench import PLAIN, benchmark

    samples = [np.random.default_rng(seed).standard_normal(16000).astype(np.float32) * 0.1 for seed in (0, 1)]
    cpu = transcribe((tiny_english_model(), tiny_processor()), samples, max_new_tokens=4, no_speech_threshold=None)
    model = tiny_english_model().cuda()
    gpu = transcribe((model, tiny_processor()), samples, max_new_tokens=4, no_speech_threshold=None)
    assert [t.text for t in gpu] == [t.text for t in cpu]  # the same greedy tokens as on the CPU
    result = benchmark(model, tiny_english_model().cuda(), repeats=2, warmup=1)
    assert result.model.kernels == result.baseline.kernels == PLAIN and result.same_kernels_baseline is None
    assert len(result.results[0].model_ms.samples) == 2


def test_a_lite_model_on_cuda_runs_the_plain_modules():
    """The fast CPU route never runs on a GPU: moving a routed model there removes it, and it is not applied there."""
    from test_cpu_route import mixed_lite_model

    from lite_whisper.runtime.cpu_route import apply_cpu_route, routed_layers

    lite = mixed_lite_model()
    apply_cpu_route(lite)
    lite.cuda()
    assert routed_layers(lite) == 0 and apply_cpu_route(lite) == 0
    with torch.inference_mode():
        out = lite.model.encoder(torch.randn(1, 80, 3000, device="cuda")).last_hidden_state
    assert out.device.type == "cuda" and torch.isfinite(out).all()


def test_cli_compress_on_cuda(tmp_path, calibration_folder):
    from lite_whisper.cli import main
    from lite_whisper.models.loading import save_model

    dense = save_model(tiny_whisper_model(vocab_size=51864), tiny_processor(), tmp_path / "dense")
    assert main(["compress", str(dense), "--calibration", str(calibration_folder), "--device", "cuda",
                 "--compute-dtype", "float16", "--threshold", "0.6", "--no-progress", "-o", str(tmp_path / "lite")]) == 0
    from lite_whisper.compression.report import REPORT_FILE, CompressionReport

    report = CompressionReport.load(tmp_path / "lite" / REPORT_FILE)
    assert report.calibration_clips == 6 and report.encoder_params_after < report.encoder_params_before
