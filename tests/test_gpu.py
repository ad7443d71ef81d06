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
def test_calibration_on_cuda_matches_the_cpu(calibration_folder, compute_dtype):
    """No TF32 fixture here: calibration itself turns TF32 off for a float32 encoder (cuDNN's default is on)."""
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
    from conftest import lite_english_model

    lite = lite_english_model().cuda()  # a low-rank model against its dense original, eager and graphed
    result = benchmark(lite, model, batch_sizes=(1, 3), repeats=2, warmup=1)
    assert result.model.kernels == result.baseline.kernels == PLAIN and result.same_kernels_baseline is None
    assert result.model.encoder_params < result.baseline.encoder_params
    assert len(result.results[0].model_ms.samples) == 2
    assert [r.batch_size for r in result.graphed_results] == [1, 3] and result.graphed_results[0].speedup is not None


def test_a_lite_model_on_cuda_runs_the_plain_modules():
    """The fast CPU route never runs on a GPU: a routed model moved there steps aside, and the route is not applied there."""
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


def test_low_rank_model_on_cuda_matches_the_cpu(no_tf32):
    """The same lite model's encoder on the CPU and on CUDA: float32 (TF32 off) within 1e-4, float16 within 1e-2."""
    from conftest import lite_english_model

    lite = lite_english_model()
    features = torch.randn(2, 80, 3000, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        cpu = lite.model.encoder(features).last_hidden_state
        scale = cpu.abs().max()
        gpu = lite.cuda().model.encoder(features.cuda()).last_hidden_state.cpu()
        assert float((gpu - cpu).abs().max() / scale) <= 1e-4
        half = lite.half().model.encoder(features.cuda().half()).last_hidden_state.float().cpu()
        assert float((half - cpu).abs().max() / scale) <= 1e-2


def test_calibration_never_waits_for_the_gpu():
    """The calibration loop under torch.cuda.set_sync_debug_mode("error"): no host synchronisation in it."""
    from lite_whisper.calibration.calibrate import collect_statistics

    model = tiny_whisper_model().cuda()
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.randn(2, 80, 3000, generator=generator).pin_memory(), torch.tensor([1500, 700]))
               for _ in range(2)]

    def guarded():  # only the loop over batches: the weight fingerprint before it reads weights on purpose
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield from batches
        finally:
            torch.cuda.set_sync_debug_mode(0)

    for exclude_padding in (False, True):
        statistics = collect_statistics(model, guarded(), exclude_padding=exclude_padding, progress=False)
        assert statistics.calibration_clips == 4
        assert all(m.count == (4400 if exclude_padding else 6000) for m in statistics.moments.values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_graphed_encoder_equals_eager(dtype, no_tf32):
    """CUDA graphs per bucket (3 clips replayed as 4, then 1 and 3 again): the eager encoder's states."""
    from conftest import lite_english_model

    from lite_whisper.runtime.fast_encoder import FastEncoder

    for model in (tiny_english_model(), lite_english_model()):
        model = model.to(device="cuda", dtype=dtype)
        graphed, eager = FastEncoder(model, "auto"), FastEncoder(model, "eager")
        assert graphed.mode == "graphed"
        bound = 1e-5 if dtype == torch.float32 else 1e-2
        for batch in (3, 1, 3):
            features = torch.randn(batch, 80, 3000, device="cuda", dtype=dtype)
            expected = eager(features)
            out = graphed(features)
            assert out.shape == expected.shape
            assert float((out - expected).abs().max() / expected.abs().max()) <= bound
        assert graphed.buckets == [1, 4]


def test_hybrid_engine_on_cuda_decodes_the_pytorch_tokens(no_tf32):
    """The GPU engine (graphed encoder, CTranslate2 decoder fed through the CUDA array interface) on a lite model:
    the same greedy tokens as the PyTorch engine on the same GPU (float32)."""
    import ctranslate2
    from conftest import clips, lite_english_model

    from lite_whisper.runtime.hybrid import HybridEngine
    from lite_whisper.runtime.pytorch import PyTorchEngine
    from lite_whisper.transcription.types import DecodingOptions

    if ctranslate2.get_cuda_device_count() == 0:
        pytest.fail("CTranslate2 sees no CUDA device (its CUDA libraries did not load): the GPU decoder cannot run")
    model = lite_english_model().cuda()
    hybrid = HybridEngine(model, tiny_processor(), decoder_type="float32")
    pytorch = PyTorchEngine(model, tiny_processor())
    audio = [samples for _, samples in clips(3)]
    options = DecodingOptions(forced_tokens=16, no_speech_threshold=None)
    ours = hybrid.decode(hybrid.encode(hybrid.features(audio)), options)
    theirs = pytorch.decode(pytorch.encode(pytorch.features(audio)), options)
    assert [w.tokens for w in ours] == [w.tokens for w in theirs]
