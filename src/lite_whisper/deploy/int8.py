"""int8 weights for an exported ONNX encoder: which MatMuls can take them, and within what error.

Dynamic int8 quantisation (per-channel int8 weights, activations quantised on the fly) makes ONNX
Runtime's MatMuls about seven times faster than float32 on CPUs with AMX; its price is error,
which a few MatMuls make most of (see `quantize_within`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

from lite_whisper.runtime.onnx_encoder import OnnxEncoder


def int8_candidates(source: str | Path) -> dict[str, int]:
    """The MatMul nodes with constant 2-D weights, in graph order, with their weight sizes (MACs per
    row of input): what int8 quantisation can take, and what leaving each in float32 costs."""
    graph = onnx.load(str(source)).graph
    weights = {init.name: list(init.dims) for init in graph.initializer}
    return {node.name: int(np.prod(weights[node.input[1]])) for node in graph.node
            if node.op_type == "MatMul" and len(weights.get(node.input[1], ())) == 2}


def quantize_within(source: str | Path, target: str | Path, features: np.ndarray, reference: np.ndarray,
                    max_error: float, min_inner: int = 0, log=lambda message: None) -> tuple[list[str], float]:
    """Int8 weights everywhere the encoder's output error allows: returns (float32 MatMuls, relative error).

    Dynamic int8 quantises each MatMul's input per tensor; where a few massive activations set that
    scale, everything else in the row loses its precision, and a handful of MatMuls make most of
    the error. So: measure each candidate's error quantised alone (on `features`, against the
    float32 `reference` output), then leave float32 the worst ones until the whole encoder's
    relative error is within `max_error`. "Worst" is tried two ways — most harmful first, and
    most harm per float32 MAC first (a large MatMul left float32 costs several small ones) — and
    the set meeting the bound with the fewest float32 MACs wins.
    """
    candidates = int8_candidates(source)
    with tempfile.TemporaryDirectory(prefix="lite-whisper-int8-") as scratch:
        trial = Path(scratch) / "trial.onnx"

        def error(quantised: set[str]) -> float:
            excluded = [name for name in candidates if name not in quantised]
            quantize_encoder(source, trial, min_inner, exclude=excluded)
            return float(np.linalg.norm(OnnxEncoder(trial)(features) - reference) / np.linalg.norm(reference))

        def fewest_meeting_the_bound(order: list[str]) -> list[str]:
            low, high = 0, len(order)  # the shortest prefix of `order` left float32 that meets the bound
            while low < high:
                middle = (low + high) // 2
                if error(set(order[middle:])) <= max_error:
                    high = middle
                else:
                    low = middle + 1
            return order[:low]

        everything = error(set(candidates))
        log(f"int8 everywhere: relative error {everything:.3g} (bound {max_error:g})")
        excluded: list[str] = []
        if everything > max_error:
            solo = {name: error({name}) for name in candidates}
            by_harm = sorted(candidates, key=solo.get, reverse=True)
            by_harm_per_mac = sorted(candidates, key=lambda name: solo[name] / candidates[name], reverse=True)
            orders = [by_harm] + ([by_harm_per_mac] if by_harm_per_mac != by_harm else [])
            excluded = min((fewest_meeting_the_bound(order) for order in orders),
                           key=lambda names: sum(candidates[name] for name in names))
    kept = quantize_encoder(source, target, min_inner, exclude=excluded)
    final = float(np.linalg.norm(OnnxEncoder(target)(features) - reference) / np.linalg.norm(reference))
    quantised = sum(name not in kept for name in candidates)
    float_share = sum(candidates[name] for name in kept if name in candidates) / sum(candidates.values())
    log(f"int8: {quantised} of {len(candidates)} MatMuls quantised ({float_share:.0%} of the MatMul weights left "
        f"float32), relative error {final:.3g}")
    return kept, final


def quantize_encoder(source: str | Path, target: str | Path, min_inner: int = 0,
                     exclude: list[str] | None = None) -> list[str]:
    """Write an int8-weight copy of the ONNX encoder `source` to `target` (dynamic quantisation).

    Per-channel int8 weights for every MatMul with a constant 2-D weight, activations quantised
    on the fly. Weights use 7 of the 8 bits (`reduce_range`): CPUs without VNNI (AVX2 only, e.g.
    AMD Zen 2/3) multiply uint8 activations by int8 weights with VPMADDUBSW, which saturates the
    sum of two full-range products at 16 bits; 7-bit weights cannot overflow it, so a folder
    exported anywhere is right everywhere (measured on an AVX2-only CPU, tiny.en with every MatMul
    int8: relative output error 0.183 with 8-bit weights, 0.081 with 7-bit; docs/RESULTS.md §8). MatMuls whose inner dimension is below `min_inner` stay float32 (the quantise
    step in front of a thin low-rank MatMul can cost more than it saves), as do those named in
    `exclude`. Returns the MatMuls with constant weights left in float32.
    """
    graph = onnx.load(str(source)).graph
    weights = {init.name: list(init.dims) for init in graph.initializer}

    def keep_float(node) -> bool:
        shape = weights.get(node.input[1])
        # per-channel int8 takes 2-D weights only: the per-head matrices of reduced-dimension
        # attention (3-D constants) stay float32, as do thin MatMuls below min_inner
        return shape is not None and (len(shape) != 2 or shape[0] < min_inner)

    named = set(exclude or ())
    excluded = [node.name for node in graph.node if node.op_type == "MatMul" and (keep_float(node) or node.name in named)]
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the quantiser's advice to pre-process, once per call, is not for our users
    try:
        quantize_dynamic(str(source), str(target), per_channel=True, weight_type=QuantType.QInt8,
                         reduce_range=True, op_types_to_quantize=["MatMul"], nodes_to_exclude=excluded)
    finally:
        logging.disable(previous)
    return excluded
