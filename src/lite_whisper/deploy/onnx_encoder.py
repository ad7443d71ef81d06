"""The encoder as ONNX: export (each low-rank linear stays two MatMuls), int8 weights, a session.

ONNX Runtime runs the same graph about twice as fast as eager PyTorch on these CPUs
(../shared/docs/CPU_PERF.md), and keeps the low-rank structure that CTranslate2 cannot load.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lite_whisper.evaluation.cost import encoder_of

INPUT_NAME = "input_features"
OUTPUT_NAME = "last_hidden_state"


class _EncoderOutput(nn.Module):
    """The encoder as one tensor in, one tensor out (what an ONNX graph and its callers want)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_features).last_hidden_state


def export_encoder(model: nn.Module, path: str | Path) -> Path:
    """Write `model`'s encoder to `path` as float32 ONNX, batch dimension dynamic.

    Low-rank linears are exported as the plain module path (the oneDNN fast route steps aside
    under tracing), so each stays two MatMuls. The model itself is not changed.
    """
    encoder = encoder_of(model)
    if next(encoder.parameters()).dtype != torch.float32:
        raise ValueError("export the encoder from a float32 model (load it with dtype='float32')")
    wrapper = _EncoderOutput(encoder).eval()
    example = torch.zeros(2, encoder.conv1.in_channels, 2 * encoder.config.max_source_positions)
    batch = torch.export.Dim("batch", min=1, max=1024)
    path = Path(path)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter is not the user's concern
        torch.onnx.export(wrapper, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_shapes={"input_features": {0: batch}}, dynamo=True, external_data=False,
                          verbose=False)
    return path


def int8_candidates(source: str | Path) -> list[str]:
    """The MatMul nodes with constant 2-D weights, in graph order: what int8 quantisation can take."""
    import onnx

    graph = onnx.load(str(source)).graph
    weights = {init.name: list(init.dims) for init in graph.initializer}
    return [node.name for node in graph.node if node.op_type == "MatMul" and len(weights.get(node.input[1], ())) == 2]


def quantize_within(source: str | Path, target: str | Path, features: np.ndarray, reference: np.ndarray,
                    max_error: float, min_inner: int = 0, log=lambda message: None) -> tuple[list[str], float]:
    """Int8 weights everywhere the encoder's output error allows: returns (float32 MatMuls, relative error).

    Dynamic int8 quantises each MatMul's input per tensor; where a few massive activations set that
    scale, everything else in the row loses its precision, and a handful of MatMuls make most of
    the error. So: measure each candidate's error quantised alone (on `features`, against the
    float32 `reference` output), then leave float32 the worst ones, most harmful first, until the
    whole encoder's relative error is within `max_error`.
    """
    import tempfile

    candidates = int8_candidates(source)
    with tempfile.TemporaryDirectory(prefix="lite-whisper-int8-") as scratch:
        trial = Path(scratch) / "trial.onnx"

        def error(quantised: set[str]) -> float:
            excluded = [name for name in candidates if name not in quantised]
            quantize_encoder(source, trial, min_inner, exclude=excluded)
            return float(np.linalg.norm(OnnxEncoder(trial)(features) - reference) / np.linalg.norm(reference))

        everything = error(set(candidates))
        log(f"int8 everywhere: relative error {everything:.3g} (bound {max_error:g})")
        excluded: list[str] = []
        if everything > max_error:
            solo = {name: error({name}) for name in candidates}
            order = sorted(candidates, key=solo.get, reverse=True)
            low, high = 0, len(order)  # fewest exclusions (most harmful first) meeting the bound, by bisection
            while low < high:
                middle = (low + high) // 2
                if error(set(order[middle:])) <= max_error:
                    high = middle
                else:
                    low = middle + 1
            excluded = order[:low]
    kept = quantize_encoder(source, target, min_inner, exclude=excluded)
    final = float(np.linalg.norm(OnnxEncoder(target)(features) - reference) / np.linalg.norm(reference))
    quantised = sum(name not in kept for name in candidates)
    log(f"int8: {quantised} of {len(candidates)} MatMuls quantised, relative error {final:.3g}")
    return kept, final


def quantize_encoder(source: str | Path, target: str | Path, min_inner: int = 0,
                     exclude: list[str] | None = None) -> list[str]:
    """Write an int8-weight copy of the ONNX encoder `source` to `target` (dynamic quantisation).

    Per-channel int8 weights for every MatMul with a constant 2-D weight, activations quantised
    on the fly. MatMuls whose inner dimension is below `min_inner` stay float32 (the quantise
    step in front of a thin low-rank MatMul can cost more than it saves), as do those named in
    `exclude`. Returns the MatMuls with constant weights left in float32.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(source)).graph
    weights = {init.name: list(init.dims) for init in graph.initializer}

    def keep_float(node) -> bool:
        shape = weights.get(node.input[1])
        # per-channel int8 takes 2-D weights only: the per-head matrices of reduced-dimension
        # attention (3-D constants) stay float32, as do thin MatMuls below min_inner
        return shape is not None and (len(shape) != 2 or shape[0] < min_inner)

    named = set(exclude or ())
    excluded = [node.name for node in graph.node if node.op_type == "MatMul" and (keep_float(node) or node.name in named)]
    quantize_dynamic(str(source), str(target), per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul"], nodes_to_exclude=excluded)
    return excluded


class OnnxEncoder:
    """An ONNX Runtime session for an exported encoder: log-mel features in, encoder states out."""

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # CTranslate2 decodes right after on the same cores: idle ORT threads must not spin
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """(batch, n_mels, 3000) float32 -> (batch, 1500, d_model) float32, C-contiguous."""
        features = np.ascontiguousarray(features, dtype=np.float32)
        return np.ascontiguousarray(self.session.run([OUTPUT_NAME], {INPUT_NAME: features})[0])
