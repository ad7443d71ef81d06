"""The GPU engine's parts, on the CPU: bucketed and compiled encoders, and the hybrid engine (PyTorch encoder,
CTranslate2 decoder) against transformers' own greedy tokens. CUDA graphs themselves: tests/test_gpu.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_processor
from test_deploy import clips, lite_english_model

from lite_whisper.runtime.fast_encoder import FastEncoder, bucket_for
from lite_whisper.runtime.hybrid import HybridEngine
from lite_whisper.runtime.pytorch import PyTorchEngine
from lite_whisper.transcription.engine import transcribe_clips
from lite_whisper.transcription.types import DecodingOptions


def test_buckets_pad_at_most_a_third_from_eight_up():
    assert [bucket_for(b) for b in (1, 2, 3, 5, 8, 9, 12, 13, 17, 25, 33, 49, 64, 65)] == \
        [1, 2, 4, 8, 8, 12, 12, 16, 24, 32, 48, 64, 64, 96]
    assert all(bucket_for(b) - b <= bucket_for(b) // 3 for b in range(8, 300))  # from 8 up; below, powers of two
    with pytest.raises(ValueError, match="at least 1"):
        bucket_for(0)


def test_eager_and_compiled_encoders_equal_the_modules():
    """torch.compile on bucket-padded batches (3 clips run as 4): the same states as the plain encoder."""
    model = lite_english_model()
    features = torch.randn(3, 80, 3000, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = model.model.encoder(features).last_hidden_state
    assert torch.equal(FastEncoder(model, "eager")(features), reference)
    compiled = FastEncoder(model, "compiled")
    out = compiled(features)
    assert out.shape == reference.shape
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4)
    assert FastEncoder(model, "auto").mode == "eager"  # graphed only on CUDA
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        FastEncoder(model, "graphed")
    with pytest.raises(ValueError, match="unknown encoder mode"):
        FastEncoder(model, "fast")


@pytest.fixture(scope="module")
def engines():
    model = lite_english_model()
    processor = tiny_processor()
    return PyTorchEngine(model, processor), HybridEngine(model, processor, threads=1)


def test_hybrid_engine_decodes_transformers_greedy_tokens(engines):
    """CTranslate2 fed with the PyTorch encoder's states picks the tokens transformers' generate picks."""
    pytorch, hybrid = engines
    audio = [samples for _, samples in clips(3)]
    for options in (DecodingOptions(max_new_tokens=24, no_speech_threshold=None),
                    DecodingOptions(forced_tokens=24, no_speech_threshold=None)):
        ours = hybrid.decode(hybrid.encode(hybrid.features(audio)), options)
        theirs = pytorch.decode(pytorch.encode(pytorch.features(audio)), options)
        assert [window.tokens for window in ours] == [window.tokens for window in theirs]
        assert all(len(window.tokens) >= 1 for window in ours)
    assert [len(window.tokens) for window in ours] == [24, 24, 24]  # forced: exactly N


def test_hybrid_engine_transcribes_through_the_one_protocol(engines):
    """The engine loop (batches, the silence rule's scores, fallback) runs on it, and matches the PyTorch engine."""
    pytorch, hybrid = engines
    options = DecodingOptions(max_new_tokens=16)
    named = clips(3)
    ours = list(transcribe_clips(hybrid, named, batch_size=2, options=options))
    theirs = list(transcribe_clips(pytorch, named, batch_size=2, options=options))
    assert [t.text for t in ours] == [t.text for t in theirs]
    decoded = hybrid.decode(hybrid.encode(hybrid.features([named[0][1]])), options)
    assert decoded[0].no_speech_prob is not None and np.isfinite(decoded[0].mean_logprob)
    assert hybrid.take(hybrid.encode(hybrid.features([named[0][1], named[1][1]])), [1, 1]).shape[0] == 2
