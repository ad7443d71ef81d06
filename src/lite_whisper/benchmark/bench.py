"""Encoder speed of a model against a dense baseline, measured in the same process.

What is measured, per batch size: the encoder's latency on a 30 s input (batch x n_mels x
3000), after warm-up, with the contenders interleaved (A B C A B C ...) so that load from
other processes and frequency drift hit all alike. The contenders are the model, the dense
baseline as users run it (stock transformers) and, when the model runs on faster kernels
than that (lite-whisper's oneDNN CPU route), the same baseline on those kernels: two ratios,
one for what a user gains, one for what the compression alone buys (see `results`). Next to
them: the analytic FLOPs of both encoders, the speedup those FLOPs predict, and measured
(same-kernel) / predicted ("FLOP efficiency": 1.0 means every FLOP saved became time saved).

Optionally, end to end: the same clips transcribed by the model and the baseline (RTFx, and
the share of the wall time spent in the encoder).
"""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Iterable

from torch import nn

from lite_whisper.benchmark.encoder_timing import encoder_input, time_interleaved
from lite_whisper.benchmark.end_to_end import end_to_end_timing
from lite_whisper.benchmark.environment import environment, load_average, torch_threads
from lite_whisper.benchmark.results import BatchResult, BenchResult, ModelInfo
from lite_whisper.lowrank.cost import encoder_of
from lite_whisper.memory import peak_rss_bytes
from lite_whisper.runtime.cpu_route import apply_cpu_route, routed_layers
from lite_whisper.runtime.fast_encoder import FastEncoder
from lite_whisper.runtime.pytorch import PyTorchEngine

FAST_ROUTE = "lite-whisper fast CPU route (oneDNN)"
PLAIN = "plain modules"


def kernels_of(model: nn.Module) -> str:
    """Which kernels `model`'s encoder runs on: the fast CPU route or the plain (stock) modules."""
    return FAST_ROUTE if routed_layers(model) else PLAIN


def on_fast_route(model: nn.Module) -> nn.Module:
    """A twin of `model` sharing its weights (nothing is copied; `model` is unchanged) with every encoder
    layer on lite-whisper's fast CPU route, when the route can run here. Timing a dense baseline this
    way separates what the low-rank factors gain from what the faster kernels gain."""
    shared = {id(tensor): tensor for tensor in itertools.chain(model.parameters(), model.buffers())}
    twin = copy.deepcopy(model, shared)  # new modules around the same tensors (copies come back plain)
    apply_cpu_route(twin)
    return twin


def benchmark(
    model: nn.Module,
    baseline: nn.Module | None = None,
    *,
    batch_sizes: Iterable[int] = (1,),
    repeats: int = 5,
    warmup: int = 1,
    threads: int | None = None,
    model_name: str | None = None,
    baseline_name: str | None = None,
    model_source: str | Path | None = None,
    baseline_source: str | Path | None = None,
    data=None,
    processor=None,
    baseline_processor=None,
    limit: int | None = None,
    decode_batch_size: int = 8,
    options=None,
    log=None,
) -> BenchResult:
    """Time `model`'s encoder against `baseline`'s as run and on the same kernels, interleaved, on 30 s inputs.

    `model_source` / `baseline_source`: the folder a model was loaded from, so weight bytes
    are read from disk. `data` (a dataset spec or `SpeechDataset`) with `processor` (and
    `baseline_processor`, default `processor`) adds end-to-end transcription of `limit` clips
    with decoding `options` (default: greedy, English).
    """
    batch_sizes = tuple(batch_sizes)
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise ValueError(f"batch sizes must be positive integers, got {batch_sizes}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warm-up runs must be 0 or more, got {warmup}")
    if data is not None and processor is None:
        raise ValueError("end-to-end timing needs the processor (give processor= with data=)")
    log = log or (lambda message: None)

    info = ModelInfo.of(model, model_name, model_source, kernels_of(model))
    baseline_info = same_info = None
    contenders = [encoder_of(model)]
    if baseline is not None:
        baseline_info = ModelInfo.of(baseline, baseline_name, baseline_source, kernels_of(baseline))
        contenders.append(encoder_of(baseline))
        if info.kernels == FAST_ROUTE and baseline_info.kernels != FAST_ROUTE:
            same = on_fast_route(baseline)  # shares the baseline's weights
            same_info = ModelInfo.of(same, baseline_info.name, baseline_source, kernels_of(same))
            contenders.append(encoder_of(same))
    predicted = baseline_info.encoder_flops / info.encoder_flops if baseline_info else None
    # on a GPU, each encoder also replayed from CUDA graphs (`FastEncoder`): eager passes there are launch-bound
    graphed = [FastEncoder(model, "graphed")] if next(model.parameters()).device.type == "cuda" else []
    if graphed and baseline is not None:
        graphed.append(FastEncoder(baseline, "graphed"))

    with torch_threads(threads):
        env = environment()
        results, graphed_results = [], []
        for batch_size in batch_sizes:
            features = encoder_input(model, batch_size)
            if baseline is not None and encoder_of(baseline).conv1.in_channels != features.shape[1]:
                raise ValueError("the model and the baseline take different numbers of mel bins")
            log(f"batch {batch_size}: {warmup} warm-up and {repeats} timed runs of {len(contenders)} encoders")
            samples = time_interleaved(contenders, features, repeats, warmup)
            samples += [None] * (3 - len(samples))
            results.append(BatchResult.of(batch_size, samples[0], samples[1], samples[2], predicted))
            if graphed:
                log(f"batch {batch_size}: the same, replayed from CUDA graphs")
                samples = time_interleaved(graphed, features, repeats, warmup) + [None]
                graphed_results.append(BatchResult.of(batch_size, samples[0], samples[1], None, predicted))
        end_to_end = {}
        if data is not None:
            engines = [("model", PyTorchEngine(model, processor))]
            if baseline is not None:
                engines.append(("baseline", PyTorchEngine(baseline, baseline_processor or processor)))
            end_to_end = end_to_end_timing(engines, data, limit=limit, batch_size=decode_batch_size, options=options,
                                           log=log)
        env["load_average_end"] = load_average()
    return BenchResult(info, baseline_info, results, repeats, warmup, env, peak_rss_bytes(), end_to_end, same_info,
                       graphed_results)
