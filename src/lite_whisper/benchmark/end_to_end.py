"""End-to-end speed: the same clips transcribed by several models, taking turns; RTFx and encoder share."""

from __future__ import annotations

import time

from torch import nn

from lite_whisper.benchmark.encoder_timing import synchronize
from lite_whisper.benchmark.results import EndToEndResult
from lite_whisper.data.audio import SAMPLE_RATE
from lite_whisper.evaluation.cost import encoder_of


class EncoderTimer:
    """Accumulates wall time spent inside an encoder, via forward hooks it owns and removes."""

    def __init__(self, encoder: nn.Module):
        self.encoder = encoder
        self.seconds = 0.0
        self.calls = 0
        self._start: float | None = None
        self._handles = []

    def __enter__(self) -> EncoderTimer:
        self._handles = [
            self.encoder.register_forward_pre_hook(self._before),
            self.encoder.register_forward_hook(self._after),
        ]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _before(self, module, args) -> None:
        synchronize(next(module.parameters()).device)
        self._start = time.perf_counter()

    def _after(self, module, args, output) -> None:
        synchronize(next(module.parameters()).device)
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self.calls += 1
            self._start = None


def end_to_end_timing(
    models, data, *, limit: int | None = None, batch_size: int = 8, options=None, log=None
) -> dict[str, EndToEndResult]:
    """Transcribe the same clips with each `(name, model, processor)`; RTFx and encoder share.

    Audio is decoded once beforehand, so file reading is not timed. Each model first
    transcribes one clip as a warm-up; then the models take turns batch by batch
    (A B A B ...), like the encoder timings, so background load hits them alike.
    `options`: `DecodingOptions`, default greedy English.
    """
    from lite_whisper.data.datasets import SpeechDataset, load_dataset
    from lite_whisper.inference.transcribe import DecodingOptions, transcribe_iter

    log = log or (lambda message: None)
    dataset = data if isinstance(data, SpeechDataset) else load_dataset(data, limit=limit)
    clips = [(clip.id, clip.audio) for clip in dataset][:limit]
    if not clips:
        raise ValueError("no clips to transcribe")
    audio_seconds = sum(len(audio) for _, audio in clips) / SAMPLE_RATE
    options = options or DecodingOptions(language="en")
    names = [name for name, _, _ in models]
    log(f"end to end: {', '.join(names)} transcribe {len(clips)} clips ({audio_seconds:.0f} s of audio)")
    wall = dict.fromkeys(names, 0.0)
    timers = {name: EncoderTimer(encoder_of(model)) for name, model, _ in models}
    for name, model, processor in models:
        list(transcribe_iter(model, processor, clips[:1], batch_size=1, options=options))  # warm-up
    for first in range(0, len(clips), batch_size):
        chunk = clips[first:first + batch_size]
        for name, model, processor in models:
            with timers[name]:
                start = time.perf_counter()
                for _ in transcribe_iter(model, processor, chunk, batch_size=batch_size, options=options):
                    pass
                wall[name] += time.perf_counter() - start
    return {
        name: EndToEndResult(
            clips=len(clips),
            audio_seconds=audio_seconds,
            wall_seconds=wall[name],
            rtfx=audio_seconds / wall[name],
            encoder_seconds=timers[name].seconds,
            encoder_share=timers[name].seconds / wall[name],
        )
        for name in names
    }
