"""One way to time transcription contenders: the same clips, taking turns chunk by chunk (A B A B ...).

Each contender is a name and a function from clips to transcripts. Before timing, each is warmed up
on the first clip(s) until two warm-up runs in a row take about as long (caches, lazy initialisation,
thread pools, graph compilation all settle at different speeds). Then the chunks go round: every
contender transcribes chunk 1, then every contender chunk 2, ..., so background load on a noisy
machine hits them alike. A contender that fails (an exception; out of memory included) is reported
with what stopped it and drops out; the others go on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

Clip = tuple[str, np.ndarray]  # (id, 16 kHz mono float32 samples)


@dataclass
class Contender:
    name: str
    transcribe: Callable[[list[Clip]], list[str]]  # the clips' transcripts, in order
    after_warmup: Callable[[], None] = lambda: None  # e.g. zero a counter the warm-up ran up


@dataclass
class Timing:
    name: str
    wall_seconds: float = 0.0  # the timed chunks only (not the warm-up)
    hypotheses: list[str] = field(default_factory=list)
    warmup_runs: int = 0
    failure: str = ""  # what stopped it ("out of memory: ...", "ValueError: ..."); empty when it finished

    @property
    def failed(self) -> bool:
        return bool(self.failure)


def describe_failure(error: BaseException) -> str:
    """`error` as a report line; out-of-memory errors of torch, ONNX Runtime and Python say so first."""
    text = f"{type(error).__name__}: {error}".strip()
    lowered = text.lower()
    if isinstance(error, MemoryError) or "outofmemory" in type(error).__name__.lower() or "out of memory" in lowered \
            or "failed to allocate memory" in lowered:
        return f"out of memory: {text}"
    return text


def run_interleaved(contenders: Sequence[Contender], clips: Sequence[Clip], *, chunk_size: int = 8,
                    warmup_clips: int = 1, warmup_tolerance: float = 0.1, max_warmup_runs: int = 4,
                    clock: Callable[[], float] = time.perf_counter, log=lambda message: None) -> list[Timing]:
    """Time every contender on `clips`, taking turns chunk by chunk; one Timing each, in `contenders`' order.

    Warm-up: the first `warmup_clips` clips, run until a run's time is within `warmup_tolerance` of the
    one before (at least 2 runs, at most `max_warmup_runs`).
    """
    if not contenders:
        raise ValueError("no contenders to time")
    if len({contender.name for contender in contenders}) != len(contenders):
        raise ValueError(f"contender names must differ: {[contender.name for contender in contenders]}")
    if not clips:
        raise ValueError("no clips to transcribe")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    timings = {contender.name: Timing(contender.name) for contender in contenders}

    def attempt(contender: Contender, items: list[Clip]) -> tuple[list[str] | None, float]:
        start = clock()
        try:
            texts = list(contender.transcribe(items))
        except Exception as error:  # reported and dropped: one contender's failure is not the benchmark's
            timings[contender.name].failure = describe_failure(error)
            log(f"{contender.name} failed: {timings[contender.name].failure}")
            return None, 0.0
        elapsed = clock() - start
        if len(texts) != len(items):
            timings[contender.name].failure = f"returned {len(texts)} transcripts for {len(items)} clips"
            return None, 0.0
        return texts, elapsed

    live = []
    warmup = list(clips[:max(warmup_clips, 1)])
    for contender in contenders:
        previous = None
        for run in range(1, max(max_warmup_runs, 2) + 1):
            texts, elapsed = attempt(contender, warmup)
            if texts is None:
                break
            timings[contender.name].warmup_runs = run
            if previous is not None and abs(elapsed - previous) <= warmup_tolerance * previous:
                break
            previous = elapsed
        if not timings[contender.name].failed:
            contender.after_warmup()
            live.append(contender)
    for first in range(0, len(clips), chunk_size):
        chunk = list(clips[first:first + chunk_size])
        for contender in list(live):
            texts, elapsed = attempt(contender, chunk)
            if texts is None:
                live.remove(contender)
                continue
            timings[contender.name].wall_seconds += elapsed
            timings[contender.name].hypotheses += texts
    return [timings[contender.name] for contender in contenders]
