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

from lite_whisper.compression.calibrate import calibrate
from lite_whisper.compression.compress import compress
from lite_whisper.compression.config import CompressionConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("compute_dtype", [None, torch.float16, torch.bfloat16])
def test_calibration_on_cuda_matches_the_cpu(calibration_folder, compute_dtype):
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


def test_transcription_and_bench_on_cuda():
    from lite_whisper.benchmark.bench import benchmark
    from lite_whisper.inference.transcribe import transcribe

    model = tiny_english_model().cuda()
    samples = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    texts = transcribe((model, tiny_processor()), [samples], max_new_tokens=4)
    assert len(texts) == 1
    result = benchmark(model, tiny_english_model().cuda(), repeats=2, warmup=1)
    assert result.results[0].model_ms.median > 0


def test_cli_compress_on_cuda(tmp_path, calibration_folder):
    from lite_whisper.cli import main
    from lite_whisper.models.loading import save_model

    dense = save_model(tiny_whisper_model(vocab_size=51864), tiny_processor(), tmp_path / "dense")
    assert main(["compress", str(dense), "--calibration", str(calibration_folder), "--device", "cuda",
                 "--compute-dtype", "float16", "--threshold", "0.6", "--no-progress", "-o", str(tmp_path / "lite")]) == 0
