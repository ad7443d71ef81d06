"""int8 weights for an exported ONNX encoder: which MatMuls can take them, and within what error.

Dynamic int8 quantisation (per-channel int8 weights, activations quantised on the fly) makes ONNX
Runtime's MatMuls about seven times faster than float32 on CPUs with AMX; its price is error,
which a few MatMuls make most of (see `quantize_within`).

Finding those few takes one quantise-and-run trial per MatMul on small encoders; large ones (194
MatMuls in large-v3's encoder, a trial there ~2 minutes on 2 cores) are searched from one
sensitivity pass instead (`int8_sensitivity`) and a handful of trials (`guided_exclusion`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

from lite_whisper.deploy.int8_writer import Int8Writer
from lite_whisper.runtime.onnx_encoder import OnnxEncoder


def int8_candidates(source: str | Path | Int8Writer) -> dict[str, int]:
    """The MatMul nodes with constant 2-D weights, in graph order, with their weight sizes (MACs per
    row of input): what int8 quantisation can take, and what leaving each in float32 costs."""
    writer = source if isinstance(source, Int8Writer) else Int8Writer(source)
    return {name: int(np.prod(writer.weight_shape(name))) for name in writer.candidates}


# up to this many candidates each is tried quantised alone (one trial each: tiny.en and base have 26-74)
EXHAUSTIVE_LIMIT = 96
GUIDED_TRIALS = 5  # trials after "int8 everywhere" before the guided search gives up and keeps all float32


def quantize_within(source: str | Path, target: str | Path, features: np.ndarray, reference: np.ndarray,
                    max_error: float, min_inner: int = 0, log=lambda message: None,
                    exhaustive_limit: int = EXHAUSTIVE_LIMIT, sensitivity=None) -> tuple[list[str], float]:
    """Int8 weights everywhere the encoder's output error allows: returns (float32 MatMuls, relative error).

    Dynamic int8 quantises each MatMul's input per tensor; where a few massive activations set that
    scale, everything else in the row loses its precision, and a handful of MatMuls make most of
    the error. So: measure each candidate's error quantised alone (on `features`, against the
    float32 `reference` output), then leave float32 the worst ones until the whole encoder's
    relative error is within `max_error`. "Worst" is tried two ways — most harmful first, and
    most harm per float32 MAC first (a large MatMul left float32 costs several small ones) — and
    the set meeting the bound with the fewest float32 MACs wins. Past `exhaustive_limit` candidates,
    where a `sensitivity()` is given ({MatMul: its int8 error's share of the output's}, e.g.
    `int8_sensitivity.output_sensitivity`), the solo trials are replaced by it and by
    `guided_exclusion`'s few trials.
    """
    writer = Int8Writer(source)  # the graph read once; every trial reuses its int8 weights, each quantised once
    candidates = int8_candidates(writer)
    with tempfile.TemporaryDirectory(prefix="lite-whisper-int8-") as scratch:
        trial = Path(scratch) / "trial.onnx"
        last: dict = {}  # the trial on disk: its float32 set, what quantize_encoder kept, its error

        def measure(path: Path) -> float:  # the encoder's relative output error on `features`
            return float(np.linalg.norm(OnnxEncoder(path)(features) - reference) / np.linalg.norm(reference))

        def error(quantised: set[str]) -> float:
            excluded = [name for name in candidates if name not in quantised]
            kept = quantize_encoder(source, trial, min_inner, exclude=excluded, writer=writer)
            measured = measure(trial)
            last.update(excluded=set(excluded), kept=kept, error=measured)
            return measured

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
        if everything > max_error and len(candidates) > exhaustive_limit and sensitivity is not None:
            log(f"{len(candidates)} MatMuls: measuring what each one's int8 error does to the output in one pass "
                "instead of one trial each")
            harm = sensitivity()
            harm = {name: harm.get(name, max(harm.values())) for name in candidates}  # unmapped: most harmful
            excluded = guided_exclusion(candidates, harm, everything, max_error,
                                        lambda names: error(set(candidates) - set(names)), log=log)
        elif everything > max_error:
            solo = {name: error({name}) for name in candidates}
            by_harm = sorted(candidates, key=solo.get, reverse=True)
            by_harm_per_mac = sorted(candidates, key=lambda name: solo[name] / candidates[name], reverse=True)
            orders = [by_harm] + ([by_harm_per_mac] if by_harm_per_mac != by_harm else [])
            excluded = min((fewest_meeting_the_bound(order) for order in orders),
                           key=lambda names: sum(candidates[name] for name in names))
        if last["excluded"] == set(excluded):  # the last trial is the answer: keep it (a large encoder's trial is minutes)
            move_onnx(trial, target)
            kept, final = last["kept"], last["error"]
        else:
            kept = quantize_encoder(source, target, min_inner, exclude=excluded, writer=writer)
            final = measure(target)
    quantised = sum(name not in kept for name in candidates)
    float_share = sum(candidates[name] for name in kept if name in candidates) / sum(candidates.values())
    log(f"int8: {quantised} of {len(candidates)} MatMuls quantised ({float_share:.0%} of the MatMul weights left "
        f"float32), relative error {final:.3g}")
    return kept, final


def guided_exclusion(candidates: dict[str, int], harm: dict[str, float], everything: float, max_error: float,
                     trial, log=lambda message: None, trials: int = GUIDED_TRIALS) -> list[str]:
    """The MatMuls to leave float32, found in a few trials from `harm`, each one's int8 error's share of the output's.

    Model: the encoder's squared relative error is c x the sum of the quantised MatMuls' `harm`, c
    fitted to the last trial (`everything`: all int8). Each round leaves float32 the fewest
    MatMuls, most harm per float32 MAC first, that bring the model's estimate to 80% of the bound,
    then `trial(excluded)` measures the real error; a miss refits c and goes on. Returns the first set
    that meets the bound; after `trials` misses, every candidate (all float32).
    """
    order = sorted(candidates, key=lambda name: harm[name] / candidates[name], reverse=True)
    total = sum(harm.values())
    measured, kept_harm, count = everything, total, 0
    for attempt in range(1, trials + 1):
        scale = measured ** 2 / max(kept_harm, 1e-30)
        while count < len(order) and scale * kept_harm > (0.8 * max_error) ** 2:
            kept_harm -= harm[order[count]]
            count += 1
        measured = trial(order[:count])
        share = sum(candidates[name] for name in order[:count]) / sum(candidates.values())
        log(f"guided trial {attempt}: {count} MatMuls float32 ({share:.0%} of the weights), relative error "
            f"{measured:.3g} (bound {max_error:g})")
        if measured <= max_error:
            return order[:count]
        if count == len(order):
            break
    log(f"the guided search missed the bound in {trials} trials: every MatMul stays float32")
    return list(order)


def move_onnx(source: Path, target: Path) -> None:
    """Rename an ONNX file and its external data file (which the graph names: renamed there too)."""
    source, target = Path(source), Path(target)
    model = onnx.load(str(source), load_external_data=False)
    data = source.with_name(source.name + ".data")
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                if entry.value != data.name:
                    raise ValueError(f"{source}: external data in {entry.value}, expected {data.name}")
                entry.value = target.name + ".data"
    if data.exists():
        data.replace(target.with_name(target.name + ".data"))
    onnx.save(model, str(target))
    source.unlink()


def quantize_encoder(source: str | Path, target: str | Path, min_inner: int = 0,
                     exclude: list[str] | None = None, writer: Int8Writer | None = None) -> list[str]:
    """Write an int8-weight copy of the ONNX encoder `source` to `target` (dynamic quantisation).

    Per-channel int8 weights for every MatMul with a constant 2-D weight, activations quantised
    on the fly (ONNX Runtime's dynamic quantisation, written tensor by tensor: `int8_writer`). Weights
    use 7 of the 8 bits (`reduce_range`): CPUs without VNNI (AVX2 only, e.g.
    AMD Zen 2/3) multiply uint8 activations by int8 weights with VPMADDUBSW, which saturates the
    sum of two full-range products at 16 bits; 7-bit weights cannot overflow it, so a folder
    exported anywhere is right everywhere (measured on an AVX2-only CPU, tiny.en with every MatMul
    int8: relative output error 0.183 with 8-bit weights, 0.081 with 7-bit; docs/RESULTS.md §8). MatMuls whose
    inner dimension is below `min_inner` stay float32 (the quantise step in front of a thin low-rank MatMul can
    cost more than it saves), as do those named in `exclude` and the per-head matrices of reduced-dimension
    attention (3-D constants: per-channel int8 takes 2-D weights only). Returns the MatMuls with constant
    weights left in float32. `writer`: one already made for `source` (the search's trials share its int8 weights).
    """
    writer = writer or Int8Writer(source)
    graph = writer.model.graph
    named = set(exclude or ())
    excluded = [node.name for node in graph.node if node.op_type == "MatMul" and node.input[1] in writer.initializers
                and (node.name not in writer.candidates or writer.weight_shape(node.name)[0] < min_inner
                     or node.name in named)]
    writer.write(target, [name for name in writer.candidates if name not in excluded])
    return excluded


def quantize_decoder(source: str | Path, target: str | Path) -> None:
    """Write an 8-bit-weight copy of an ONNX decoder graph: every MatMul with a constant weight and the token
    embedding's Gather, uint8 weights, one scale a tensor (transformers.js's "q8" convention).

    Measured on tiny.en's merged decoder (32 dev clips, float32 encoder, AVX2 CPU): this keeps the float32
    WER (5.73); the encoder's recipe (int8, per channel, 7-bit) cost +0.79 points, per-channel uint8 +0.29.
    (The same WER on that CPU, which lacks VNNI: no sign of the saturation that 8-bit int8 weights suffer there.)
    """
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(str(source), str(target), per_channel=False, reduce_range=False,
                         weight_type=QuantType.QUInt8, op_types_to_quantize=["MatMul", "Gather"])
    finally:
        logging.disable(previous)
