"""The GPU engine's parts, on the CPU: bucketed and compiled encoders, and the hybrid engine (PyTorch encoder,
CTranslate2 decoder) against transformers' own greedy tokens. CUDA graphs themselves: tests/test_gpu.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import clips, lite_english_model, tiny_english_model, tiny_processor

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


def test_leaderboard_harness_times_every_contender_on_the_same_clips(engines, tmp_path):
    """The GPU benchmark's leaderboard (the timing harness's leaderboard preset) with CPU engines: the hybrid and
    PyTorch engines and faster-whisper's batched pipeline each make exactly N forced tokens per clip at every batch
    size; with references, corpus WER; a contender that cannot be built, makes the wrong count or runs out of
    memory is reported."""
    from lite_whisper.benchmark.leaderboard import EngineRunner, FasterWhisperRunner, run_leaderboard, table
    from lite_whisper.models.ctranslate2.decoder import convert_to_ctranslate2

    pytorch, hybrid = engines
    audio = [samples for _, samples in clips(3)]
    forced = DecodingOptions(language="en", forced_tokens=8, no_speech_threshold=None)
    folder = convert_to_ctranslate2(tiny_english_model(), tiny_processor(), tmp_path / "fw", quantization="float32")
    made = []

    def faster_whisper(batch_size):
        made.append(batch_size)
        return FasterWhisperRunner(str(folder), device="cpu", compute_type="float32", options=forced,
                                   generation_config=tiny_english_model().generation_config, batch_size=batch_size)

    contenders = [("hybrid", lambda b: EngineRunner(hybrid, forced)), ("torch", lambda b: EngineRunner(pytorch, forced)),
                  ("faster-whisper", faster_whisper)]
    runs = run_leaderboard(contenders, audio, None, [1, 2], forced_tokens=8, warmup_batches=1)
    assert [(run.contender, run.batch_size) for run in runs] == [
        (name, batch) for name in ("hybrid", "torch", "faster-whisper") for batch in (1, 2)]
    assert all(run.error is None and run.tokens_per_clip == [8] and run.rtfx > 0 and run.wer is None for run in runs), \
        table(runs)
    assert made == [1, 2]  # one engine per batch size, made when its turn comes
    assert runs[0].audio_seconds == round(sum(len(a) for a in audio) / 16000, 2)

    free = DecodingOptions(language="en", max_new_tokens=6, no_speech_threshold=None)
    scored = run_leaderboard([("hybrid", lambda b: EngineRunner(hybrid, free))], audio, ["a b c"] * 3, [3],
                             warmup_batches=0)
    assert scored[0].wer is not None and scored[0].wer >= 0

    def broken(batch_size):
        raise RuntimeError("no CUDA libraries")

    failed = run_leaderboard([("broken", broken)], audio, None, [1], forced_tokens=8, warmup_batches=0)
    assert failed[0].error == "RuntimeError: no CUDA libraries" and failed[0].rtfx is None  # reported, not raised

    class Runs(EngineRunner):  # one token short from its `short`-th call; out of memory on its `oom`-th
        def __init__(self, short=None, oom=None):
            super().__init__(pytorch, forced)
            self.calls, self.short, self.oom = 0, short, oom

        def transcribe(self, audio):
            self.calls += 1
            if self.calls == self.oom:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            texts, counts = super().transcribe(audio)
            return texts, [count - (self.short is not None and self.calls >= self.short) for count in counts]

    # after one warm-up batch: the first timed batch one token short, the second out of memory; both reported
    runs = run_leaderboard([("short", lambda b: Runs(short=2)), ("oom", lambda b: Runs(oom=3))], audio, None, [1],
                           forced_tokens=8, warmup_batches=1)
    assert [run.error for run in runs] == ["RuntimeError: forced decoding made [7] tokens per clip, not 8",
                                           "out of memory"] and all(run.rtfx is None for run in runs)


def test_compiled_static_cache_decoder_picks_the_eager_tokens(engines):
    """decoder_mode "compiled" (static cache, transformers' compiled decode step; CUDA graphs on a GPU) decodes what
    eager transformers decodes, and never replaces the model's own forward."""
    pytorch, _ = engines
    compiled = PyTorchEngine(pytorch.model, pytorch.processor, decoder_mode="compiled")
    audio = [samples for _, samples in clips(2)]
    options = DecodingOptions(forced_tokens=12, no_speech_threshold=None)
    ours = compiled.decode(compiled.encode(compiled.features(audio)), options)
    theirs = pytorch.decode(pytorch.encode(pytorch.features(audio)), options)
    assert [window.tokens for window in ours] == [window.tokens for window in theirs]
    assert "forward" not in vars(pytorch.model)
    assert hasattr(pytorch.model, "_compiled_call")  # transformers' compiled step did run (cached on the model)
    with pytest.raises(ValueError, match="unknown decoder mode"):
        PyTorchEngine(pytorch.model, pytorch.processor, decoder_mode="fast")


def test_cli_decoder_ctranslate2_transcribes_as_transformers_does(tmp_path, capsys):
    """`--decoder ctranslate2` on a PyTorch folder: the hybrid engine, the same text as transformers' decoding."""
    import json

    import soundfile

    from lite_whisper.cli import main
    from lite_whisper.models.loading import save_model

    folder = save_model(lite_english_model(), tiny_processor(), tmp_path / "lite")
    audio = tmp_path / "clip.wav"
    soundfile.write(audio, clips(2)[1][1], 16000)
    texts = []
    for decoder in ("transformers", "ctranslate2"):
        assert main(["transcribe", str(folder), str(audio), "--decoder", decoder, "--max-new-tokens", "12",
                     "--no-speech-threshold", "1", "--no-temperature-fallback", "--json"]) == 0
        texts.append(json.loads(capsys.readouterr().out)[0]["text"])
    assert texts[0] == texts[1] and texts[0]
