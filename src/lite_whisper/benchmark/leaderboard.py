"""End to end under the Open ASR Leaderboard's rules: the same clips through several engines, batch by batch.

The leaderboard times feature extraction + generation + detokenisation (not audio loading),
warms up on 10 batches, runs the largest batch that fits, scores corpus WER, and reports
RTFx = audio seconds / inference seconds. So does this, for each contender and batch size:

  engine                   any lite-whisper engine (the hybrid GPU engine, PyTorch, an export) through
                           the engine protocol: features -> encode -> decode (fallback as set) -> text
  faster-whisper-batched   a CTranslate2 folder through faster-whisper's BatchedInferencePipeline,
                           each clip given as its own segment (float16 on a GPU, as users run it)

With `forced_tokens` (random weights, whose text means nothing) every clip decodes exactly that many
tokens with end-of-text suppressed, the counts are checked, and no WER is given. A batch size that
runs out of GPU memory is reported as such and the next one runs. Each contender's runner comes from a
factory when its turn comes and is dropped after (a factory may keep its engine across batch sizes,
as scripts/gpu_benchmark.py does, so graphs captured per bucket are reused).

The timing is `benchmark.harness`'s with the leaderboard's rules as a preset (`leaderboard_preset`):
chunks of one batch, a fixed number of warm-up batches, every runner synchronised before the clock
stops, failures (out of memory included) reported per contender and batch size. One runner holds the
GPU at a time (large models would not fit side by side), so contenders run one after another here,
not in turns.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from lite_whisper.benchmark.harness import Contender, describe_failure, run_interleaved
from lite_whisper.data.audio import SAMPLE_RATE
from lite_whisper.evaluation.wer import normalize, word_errors
from lite_whisper.transcription.engine import decode_with_fallback, window_transcription
from lite_whisper.transcription.types import DecodingOptions

WARMUP_BATCHES = 10  # the leaderboard's


@dataclass
class LeaderboardRun:
    contender: str
    batch_size: int
    clips: int = 0
    audio_seconds: float = 0.0
    inference_seconds: float = 0.0
    rtfx: float | None = None
    wer: float | None = None  # corpus WER, %; None with forced tokens
    tokens_per_clip: list[int] = field(default_factory=list)  # forced tokens: all must equal N
    batch_seconds_median: float | None = None
    peak_gpu_memory_gb: float | None = None
    error: str | None = None  # "out of memory", or why the contender could not run


class Runner:
    """What a contender must offer: `transcribe(batch of audio arrays) -> (texts, token counts)` and `synchronize()`."""

    def transcribe(self, audio: Sequence[np.ndarray]) -> tuple[list[str], list[int]]:
        raise NotImplementedError

    def synchronize(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()


class EngineRunner(Runner):
    """A lite-whisper engine through the engine protocol (the silence rule and fallback as `options` say)."""

    def __init__(self, engine, options: DecodingOptions):
        self.engine, self.options = engine, options

    def transcribe(self, audio):
        engine = self.engine
        decoded = decode_with_fallback(engine, engine.encode(engine.features(list(audio))), self.options)
        texts = [window_transcription(engine, "", samples, window, self.options).text
                 for samples, window in zip(audio, decoded)]
        return texts, [len(window.tokens) for window in decoded]


class FasterWhisperRunner(Runner):
    """faster-whisper's BatchedInferencePipeline on a CTranslate2 folder; every clip its own segment."""

    def __init__(self, folder: str, *, device: str, compute_type: str, options: DecodingOptions,
                 generation_config, batch_size: int):
        from lite_whisper.runtime.faster_whisper_engine import FasterWhisperPipelines

        self.pipelines = FasterWhisperPipelines(folder, options=options, device=device, compute_type=compute_type,
                                                generation_config=generation_config)
        self.batch_size = batch_size

    def transcribe(self, audio):
        results = self.pipelines.batched(audio, self.batch_size)
        return [text for text, _ in results], [count for _, count in results]


def leaderboard_preset(batch_size: int, warmup_batches: int = WARMUP_BATCHES) -> dict:
    """The harness's settings for the leaderboard's rules: a chunk is a batch, a fixed warm-up of whole batches."""
    return {"chunk_size": batch_size, "warmup_clips": batch_size, "warmup_runs": warmup_batches}


def run_leaderboard(contenders: Sequence[tuple[str, Callable[[int], Runner]]], clips: Sequence[np.ndarray],
                    references: Sequence[str] | None, batch_sizes: Sequence[int], *, forced_tokens: int | None = None,
                    warmup_batches: int = WARMUP_BATCHES, max_batches: int | None = None,
                    log: Callable[[str], None] = lambda message: None) -> list[LeaderboardRun]:
    """Every contender (`(name, factory(batch_size) -> Runner)`) at every batch size over `clips` (the first
    `max_batches` x batch size of them when given: small batches need fewer clips for a steady figure)."""
    if not clips:
        raise ValueError("no clips to transcribe")
    runs = []
    for name, factory in contenders:
        for batch_size in batch_sizes:
            count = len(clips) if max_batches is None else min(len(clips), batch_size * max_batches)
            timed = [(str(index), clip) for index, clip in enumerate(clips[:count])]
            audio_seconds = sum(len(clip) for _, clip in timed) / SAMPLE_RATE
            run = LeaderboardRun(name, batch_size)
            runs.append(run)
            try:
                runner = factory(batch_size)
            except Exception as error:  # noqa: BLE001 (a contender that cannot be built is reported, not raised)
                run.error = _error(describe_failure(error))
            else:
                contender = _contender(name, runner, forced_tokens)
                timing = run_interleaved([contender], timed, **leaderboard_preset(batch_size, warmup_batches))[0]
                _record(run, timing, audio_seconds, None if references is None else references[:count], forced_tokens)
                del runner, contender
            log(f"{name} batch {batch_size}: " + (run.error or f"RTFx {run.rtfx:.1f}"
                                                  + (f", WER {run.wer:.2f}%" if run.wer is not None else "")))
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return runs


def _contender(name: str, runner: Runner, forced_tokens: int | None) -> Contender:
    """`runner` as the harness's contender: synchronised before its clock stops, its token counts checked and
    kept, its peak GPU memory counted from the end of the warm-up."""
    counts: list[int] = []

    def transcribe(items):
        texts, batch_counts = runner.transcribe([samples for _, samples in items])
        runner.synchronize()  # the GPU's work is inside the timed call
        if forced_tokens is not None and any(count != forced_tokens for count in batch_counts):
            raise RuntimeError(f"forced decoding made {sorted(set(batch_counts))} tokens per clip, not {forced_tokens}")
        counts.extend(batch_counts)
        return texts

    def after_warmup():
        counts.clear()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def details():
        memory = round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None
        return {"tokens_per_clip": list(counts), "peak_gpu_memory_gb": memory}

    return Contender(name, transcribe, after_warmup=after_warmup, details=details)


def _error(failure: str) -> str:
    return "out of memory" if failure.startswith("out of memory") else failure[:500]


def _record(run: LeaderboardRun, timing, audio_seconds: float, references, forced_tokens: int | None) -> None:
    if timing.failed:
        run.error = _error(timing.failure)
        return
    run.clips, run.audio_seconds = len(timing.hypotheses), round(audio_seconds, 2)
    run.inference_seconds = round(timing.wall_seconds, 4)
    run.rtfx = round(audio_seconds / timing.wall_seconds, 2)
    run.batch_seconds_median = round(statistics.median(timing.chunk_seconds), 4)
    counts = timing.details["tokens_per_clip"]
    run.tokens_per_clip = counts if forced_tokens is None else [forced_tokens]
    run.peak_gpu_memory_gb = timing.details["peak_gpu_memory_gb"]
    if references is not None and forced_tokens is None:
        errors = [word_errors(normalize(reference), normalize(text))
                  for reference, text in zip(references, timing.hypotheses)]
        run.wer = round(sum(errors[1:], errors[0]).wer, 2)


def table(runs: Sequence[LeaderboardRun]) -> str:
    lines = [f"{'contender':<28} {'batch':>5} {'clips':>5} {'audio s':>8} {'infer s':>8} {'RTFx':>8} {'WER %':>6} "
             f"{'GPU GB':>6}"]
    for run in runs:
        if run.error:
            lines.append(f"{run.contender:<28} {run.batch_size:>5} {run.error}")
            continue
        wer = f"{run.wer:.2f}" if run.wer is not None else "-"
        memory = f"{run.peak_gpu_memory_gb:.1f}" if run.peak_gpu_memory_gb is not None else "-"
        lines.append(f"{run.contender:<28} {run.batch_size:>5} {run.clips:>5} {run.audio_seconds:>8.1f} "
                     f"{run.inference_seconds:>8.2f} {run.rtfx:>8.1f} {wer:>6} {memory:>6}")
    return "\n".join(lines)


def as_dicts(runs: Sequence[LeaderboardRun]) -> list[dict]:
    return [asdict(run) for run in runs]
