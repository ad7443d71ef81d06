"""One way to time transcription contenders: the same clips, taking turns chunk by chunk (A B A B ...).

Each contender is a name and a function from clips to transcripts. Before timing, each is warmed up
on the first clip(s) until two warm-up runs in a row take about as long (caches, lazy initialisation,
thread pools, graph compilation all settle at different speeds). Then the chunks go round: every
contender transcribes chunk 1, then every contender chunk 2, ..., so background load on a noisy
machine hits them alike. A contender that fails (an exception; out of memory included) is reported
with what stopped it and drops out; the others go on.

The project's timings go through `run_interleaved` (not `calibration_speed`, which nets out a set-up per
call, nor ONNX Runtime's profiler); what differs is a preset of its arguments:
`leaderboard.leaderboard_preset` (a chunk is a batch, a fixed warm-up), `encoder_timing.encoder_preset` (a
chunk is one encoder pass on a 30 s input, timed by CUDA events on a GPU: `bench`, the timing scripts), the
defaults for transcription (`end_to_end`, `deployment`, `forced_decode`, `scripts/frontier.py`).

`in_own_process` makes a contender that lives in a process of its own (its peak memory its own, a
crash or the kernel's out-of-memory killer its own) and still takes its turns: the parent sends clip
indices, the child transcribes and answers.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from lite_whisper.memory import peak_rss_mb

Clip = tuple[str, np.ndarray]  # (id, 16 kHz mono float32 samples)


@dataclass
class Contender:
    name: str
    transcribe: Callable[[list[Clip]], list[str]]  # the clips' transcripts, in order
    after_warmup: Callable[[], None] = lambda: None  # e.g. zero a counter the warm-up ran up
    details: Callable[[], dict] = dict  # what it measured besides wall time (encoder seconds, peak memory ...)
    close: Callable[[], None] = lambda: None  # called once its turns are over (a process contender ends)


@dataclass
class Timing:
    name: str
    wall_seconds: float = 0.0  # the timed chunks only (not the warm-up)
    chunk_seconds: list[float] = field(default_factory=list)  # each timed chunk's
    hypotheses: list[str] = field(default_factory=list)
    warmup_runs: int = 0
    failure: str = ""  # what stopped it ("out of memory: ...", "ValueError: ..."); empty when it finished
    details: dict = field(default_factory=dict)  # the contender's `details()` after the timed chunks

    @property
    def failed(self) -> bool:
        return bool(self.failure)


class ReportedFailure(RuntimeError):
    """A failure already described (in a contender's own process): reported as it is."""


def describe_failure(error: BaseException) -> str:
    """`error` as a report line; out-of-memory errors of torch, ONNX Runtime and Python say so first."""
    if isinstance(error, ReportedFailure):
        return str(error)
    text = f"{type(error).__name__}: {error}".strip()
    lowered = text.lower()
    if isinstance(error, MemoryError) or "outofmemory" in type(error).__name__.lower() or "out of memory" in lowered \
            or "failed to allocate memory" in lowered:
        return f"out of memory: {text}"
    return text


def run_interleaved(contenders: Sequence[Contender], clips: Sequence[Clip], *, chunk_size: int = 8,
                    warmup_clips: int = 1, warmup_with: Sequence[Clip] = (), warmup_tolerance: float = 0.1,
                    max_warmup_runs: int = 4, min_warmup_runs: int = 2, warmup_runs: int | None = None,
                    clock: Callable[[], float] = time.perf_counter, log=lambda message: None) -> list[Timing]:
    """Time every contender on `clips`, taking turns chunk by chunk; one Timing each, in `contenders`' order.

    Warm-up: the first `warmup_clips` clips (or `warmup_with`, clips of its own: a 30 s window before hour-long
    recordings), run until a run's time is within `warmup_tolerance` of the
    one before (at least `min_warmup_runs` runs and never fewer than 2, at most `max_warmup_runs`), or exactly
    `warmup_runs` times when given (a fixed rule such as the leaderboard's; 0 for none). Every contender is
    closed at the end, whatever happened.
    """
    try:
        return _take_turns(contenders, clips, chunk_size, list(warmup_with) or list(clips[:max(warmup_clips, 1)]),
                           warmup_tolerance,
                           max(max_warmup_runs, min_warmup_runs), max(min_warmup_runs, 2), warmup_runs, clock, log)
    finally:
        for contender in contenders:
            contender.close()


def _take_turns(contenders, clips, chunk_size, warmup, warmup_tolerance, max_warmup_runs, min_warmup_runs,
                warmup_runs, clock, log) -> list[Timing]:
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
    for contender in contenders:
        previous = None
        for run in range(1, (max_warmup_runs if warmup_runs is None else warmup_runs) + 1):
            texts, elapsed = attempt(contender, warmup)
            if texts is None:
                break
            timings[contender.name].warmup_runs = run
            stable = previous is not None and abs(elapsed - previous) <= warmup_tolerance * previous
            if warmup_runs is None and stable and run >= min_warmup_runs:
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
            timings[contender.name].chunk_seconds.append(elapsed)
            timings[contender.name].hypotheses += texts
    for contender in live:
        try:
            timings[contender.name].details = dict(contender.details())
        except Exception as error:
            timings[contender.name].failure = describe_failure(error)
    return [timings[contender.name] for contender in contenders]


def in_own_process(name: str, factory: Callable[..., Any], clips: Sequence[Clip], *args, **kwargs) -> Contender:
    """A contender built and run in a fresh process: `factory(*args, **kwargs)` (an importable function) returns
    a function from clips to transcripts, which may also have `after_warmup()` and `details()` methods. The
    clips go to the child once; each turn sends their indices. `details()` adds the child's peak RSS in MB.
    A child that dies (killed for memory, a crash) fails the contender with its exit code."""
    context = multiprocessing.get_context("spawn")  # a clean interpreter: no parent's threads, memory or state
    parent, child = context.Pipe()
    process = context.Process(target=_serve, args=(child, factory, args, kwargs, list(clips)), daemon=True,
                              name=f"contender {name}")
    process.start()
    child.close()
    index = {clip_id: position for position, (clip_id, _) in enumerate(clips)}
    state = {"ready": False}

    def ask(request: tuple) -> Any:
        try:
            if not state["ready"]:  # the child answers once built (or says why it could not be)
                _answer(parent.recv())
                state["ready"] = True
            parent.send(request)
            return _answer(parent.recv())
        except (EOFError, BrokenPipeError, ConnectionResetError):
            process.join(timeout=5)
            code = process.exitcode
            why = " (killed: out of memory?)" if code == -signal.SIGKILL else ""
            raise ReportedFailure(f"its process ended with exit code {code}{why}") from None

    def close() -> None:
        if process.is_alive():
            try:
                parent.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
            process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()
        parent.close()

    return Contender(name, lambda items: ask(("run", [index[clip_id] for clip_id, _ in items])),
                     after_warmup=lambda: ask(("after_warmup", None)), details=lambda: ask(("details", None)),
                     close=close)


def _answer(message: tuple[str, Any]) -> Any:
    status, payload = message
    if status == "error":
        raise ReportedFailure(payload)
    return payload


def _serve(connection, factory, args, kwargs, clips: list[Clip]) -> None:
    """The child's side of `in_own_process`: build, then answer requests until told to close."""
    try:
        transcribe = factory(*args, **kwargs)
    except Exception as error:
        connection.send(("error", describe_failure(error)))
        return
    connection.send(("ok", None))
    while True:
        kind, payload = connection.recv()
        try:
            if kind == "close":
                return
            if kind == "run":
                answer = list(transcribe([clips[position] for position in payload]))
            elif kind == "after_warmup":
                answer = getattr(transcribe, "after_warmup", lambda: None)()
            else:
                answer = {**getattr(transcribe, "details", dict)(), "peak_rss_mb": round(peak_rss_mb(), 1)}
        except Exception as error:
            connection.send(("error", describe_failure(error)))
            continue
        connection.send(("ok", answer))
