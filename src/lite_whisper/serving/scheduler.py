"""Cross-request batching: one worker thread owns the engine; the windows of every request in flight
are encoded (and decoded) together.

A request of at most 30 s is one window. The worker takes the oldest waiting window and the
next ones with the same decoding options, up to `max_batch`, waiting at most `max_wait_ms`
after the oldest arrived for the batch to fill (a worker busy with the last batch has usually
let the next one fill already). Features, the encoder and the first greedy decoding run on the
whole batch; a window that needs Whisper's temperature fallback is decoded again alone, so
that no sample drawn for it depends on its batch-mates. Longer audio is cut at its pauses
(`transcription.longform`) into windows that batch like any other, and put back together when
its last window is done; with `long_form` "sequential" it goes through the engine's
`transcribe_long`, a batch of its own (as does everything on an engine with
`batches_windows = False`: faster-whisper's reference).

The scheduler is thread-safe and knows nothing of HTTP: `submit` returns a
`concurrent.futures.Future` of the `Transcription`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from lite_whisper.data.audio import SAMPLE_RATE, WINDOW_SECONDS
from lite_whisper.transcription.engine import (
    Engine,
    decode_with_fallback,
    first_pass,
    recover_if_cut_short,
    window_transcriptions,
)
from lite_whisper.transcription.longform import assemble, plan_windows, speech_regions
from lite_whisper.transcription.policy import needs_fallback
from lite_whisper.transcription.types import DecodingOptions, Transcription


class QueueFull(Exception):
    """More requests wait than the queue holds: the caller should retry later."""


class ShuttingDown(Exception):
    """The scheduler no longer takes work (it is draining or closed)."""


@dataclass
class Job:
    name: str
    samples: np.ndarray
    options: DecodingOptions
    batchable: bool
    enqueued: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)


class BatchScheduler:
    """Run `engine` on one worker thread over batches of windows from many callers.

    `max_batch`: windows per batch; `max_wait_ms`: how long the oldest waiting window may wait for
    batch-mates; `max_queue`: requests waiting beyond which `submit` raises `QueueFull`. `metrics`:
    an object with `observe_batch(size, encoder_s, decoder_s, audio_s)` and `set_queue_depth(n)`.
    """

    def __init__(self, engine: Engine, *, max_batch: int = 8, max_wait_ms: float = 20.0, max_queue: int = 64,
                 metrics=None):
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and max_queue must be at least 1, max_wait_ms at least 0")
        self.engine = engine
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000.0, max_queue
        self.metrics = metrics
        self._queue: deque[Job] = deque()
        self._condition = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._work, name="lite-whisper-worker", daemon=True)
        self._thread.start()

    def submit(self, name: str, samples: np.ndarray, options: DecodingOptions) -> Future:
        """Queue one clip (16 kHz mono float32); the future's result is its `Transcription`. Audio over 30 s
        (`options.long_form` "vad") is cut at its pauses into windows that batch with everyone else's."""
        if not self.splits(samples, options):
            return self._enqueue([Job(name, samples, options, batchable=self.batchable(samples, options))])[0]
        windows = plan_windows(speech_regions(samples))
        parts = self._enqueue([Job(name, samples[w.start:w.end], options, batchable=True) for w in windows])
        return _gathered(parts, lambda results: assemble(name, len(samples), windows, results, options.timestamps))

    def _enqueue(self, jobs: list[Job]) -> list[Future]:
        """Queue the jobs of one request together (a request is refused whole when the queue is full)."""
        with self._condition:
            if self._closing:
                raise ShuttingDown("the server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"{len(self._queue)} requests are waiting (the queue holds {self.max_queue})")
            self._queue.extend(jobs)
            self._report_depth()
            self._condition.notify()
        return [job.future for job in jobs]

    def splits(self, samples: np.ndarray, options: DecodingOptions) -> bool:
        """Whether a clip is cut into windows that batch (over 30 s, VAD long form, an engine that batches)."""
        return (self.engine.batches_windows and len(samples) > WINDOW_SECONDS * SAMPLE_RATE
                and options.long_form == "vad")

    def batchable(self, samples: np.ndarray, options: DecodingOptions) -> bool:
        """Whether a clip goes through batched windows (else the engine's `transcribe_long`, alone)."""
        return self.engine.batches_windows and len(samples) <= WINDOW_SECONDS * SAMPLE_RATE

    def close(self, timeout: float | None = None) -> None:
        """Take no more work; finish what is queued; stop the worker."""
        with self._condition:
            self._closing = True
            self._condition.notify_all()
        self._thread.join(timeout)

    # --- the worker ---------------------------------------------------------------------------

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            batch = [job for job in batch if job.future.set_running_or_notify_cancel()]  # callers gone: skip
            if not batch:
                continue
            try:
                results = self._run(batch)
            except BaseException as error:  # noqa: BLE001 - every caller hears of it; the worker goes on
                for job in batch:
                    job.future.set_exception(error)
            else:
                for job, result in zip(batch, results):
                    job.future.set_result(result)

    def _next_batch(self) -> list[Job] | None:
        with self._condition:
            while not self._queue and not self._closing:
                self._condition.wait()
            if not self._queue:
                return None  # closing, and drained
            oldest = self._queue[0]
            if not oldest.batchable:
                batch = [oldest]
            else:
                deadline = oldest.enqueued + self.max_wait
                while (len(batch := self._mates(oldest)) < self.max_batch and not self._closing
                       and (remaining := deadline - time.monotonic()) > 0):
                    self._condition.wait(remaining)
            for job in batch:
                self._queue.remove(job)
            self._report_depth()
            return batch

    def _mates(self, oldest: Job) -> list[Job]:
        """The oldest window and the next ones it can share a batch with (the same options), in order."""
        return [job for job in self._queue if job.batchable and job.options == oldest.options][:self.max_batch]

    def _report_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.set_queue_depth(len(self._queue))

    def _run(self, batch: list[Job]) -> list[Transcription]:
        engine, options = self.engine, batch[0].options
        audio_seconds = sum(len(job.samples) for job in batch) / SAMPLE_RATE
        start = time.perf_counter()
        if not batch[0].batchable:
            result = engine.transcribe_long(batch[0].name, batch[0].samples, options)
            self._observe(1, 0.0, time.perf_counter() - start, audio_seconds)
            return [result]
        encoded = engine.encode(engine.features([job.samples for job in batch]))
        encoded_at = time.perf_counter()
        decoded = self._first_pass(encoded, len(batch), options)
        for index, window in enumerate(decoded):  # Whisper's fallback, each window alone
            if options.fallback and needs_fallback(engine.tokenizer, window, options):
                decoded[index] = decode_with_fallback(engine, engine.take(encoded, [index]), options, [window])[0]
        results = window_transcriptions(engine, encoded, [(job.name, job.samples) for job in batch], decoded, options)
        results = [recover_if_cut_short(engine, job.name, job.samples, result, options)
                   for job, result in zip(batch, results)]
        self._observe(len(batch), encoded_at - start, time.perf_counter() - encoded_at, audio_seconds)
        return results

    def _first_pass(self, encoded, size: int, options: DecodingOptions):
        first = first_pass(options)
        if first.temperature == 0:  # greedy or beam search: what a window gets does not depend on the others
            return self.engine.decode(encoded, first)
        # sampling: each window alone, so its samples are those it would draw without batch-mates
        return [self.engine.decode(self.engine.take(encoded, [index]), first)[0] for index in range(size)]

    def _observe(self, size: int, encoder_seconds: float, decoder_seconds: float, audio_seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.observe_batch(size, encoder_seconds, decoder_seconds, audio_seconds)



def _gathered(parts: list[Future], combine) -> Future:
    """A future of `combine([results of parts])`, failing with the first part that fails."""
    whole: Future = Future()
    if not parts:
        whole.set_result(combine([]))
        return whole
    remaining = [len(parts)]
    lock = threading.Lock()

    def done(_part: Future) -> None:
        with lock:
            remaining[0] -= 1
            if remaining[0] or whole.done():
                return
        error = next((part.exception() for part in parts if part.exception() is not None), None)
        if error is not None:
            whole.set_exception(error)
        else:
            whole.set_result(combine([part.result() for part in parts]))

    for part in parts:
        part.add_done_callback(done)
    return whole
