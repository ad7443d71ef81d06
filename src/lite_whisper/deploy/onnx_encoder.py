"""The encoder as ONNX: export (each low-rank linear stays two MatMuls), int8 weights, a session.

ONNX Runtime runs the same graph about twice as fast as eager PyTorch on these CPUs
(../shared/docs/CPU_PERF.md), and keeps the low-rank structure that CTranslate2 cannot load.
The exported graph computes the encoder's function in the form ONNX Runtime runs fastest:
self-attention as its fused `MultiHeadAttention` kernel (never materialising per-head score
matrices in the graph: 18.8 instead of ~24 ms a layer on base, float32), and the two
convolutions of the stem as MatMuls over strided slices, which int8 quantisation then takes
(ONNX Runtime's int8 `ConvInteger` is four times slower than its float32 `Conv`; its int8
MatMul is about seven times faster than float32 on these CPUs).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lite_whisper.evaluation.cost import encoder_of

INPUT_NAME = "input_features"
OUTPUT_NAME = "last_hidden_state"


@torch.library.custom_op("lite_whisper::multi_head_attention", mutates_args=())
def multi_head_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, num_heads: int,
                         scale: float) -> torch.Tensor:
    """softmax(q k^T * scale) v per head, on (batch, seq, heads * head_dim) tensors; one node in ONNX."""
    batch, length, _ = query.shape
    heads = [t.view(batch, length, num_heads, -1).transpose(1, 2) for t in (query, key, value)]
    return F.scaled_dot_product_attention(*heads, scale=scale).transpose(1, 2).reshape(batch, length, -1)


@multi_head_attention.register_fake
def _(query, key, value, num_heads, scale):
    return query.new_empty((*query.shape[:-1], value.shape[-1]))


def _onnx_multi_head_attention():
    """ONNX Runtime's contrib `com.microsoft.MultiHeadAttention` for the exporter's translation table.

    The onnx package has no schema for contrib ops, so the op is declared here (its three
    inputs, one output and two attributes as ONNX Runtime defines them).
    """
    import onnx
    import onnxscript

    schema = onnx.defs.OpSchema(
        "MultiHeadAttention", "com.microsoft", 1,
        inputs=[onnx.defs.OpSchema.FormalParameter(name, "T") for name in ("query", "key", "value")],
        outputs=[onnx.defs.OpSchema.FormalParameter("output", "T")],
        type_constraints=[("T", ["tensor(float)"], "float32 activations")],
        attributes=[onnx.defs.OpSchema.Attribute("num_heads", onnx.defs.OpSchema.AttrType.INT, "heads"),
                    onnx.defs.OpSchema.Attribute("scale", onnx.defs.OpSchema.AttrType.FLOAT, "score scale")])
    op = onnxscript.values.Op(onnxscript.values.Opset("com.microsoft", 1), "MultiHeadAttention", schema)

    def translate(query, key, value, num_heads: int, scale: float):
        return op(query, key, value, num_heads=num_heads, scale=scale)

    return {torch.ops.lite_whisper.multi_head_attention.default: translate}


class _FusedSelfAttention(nn.Module):
    """An encoder self-attention module's function through `multi_head_attention` (export only)."""

    def __init__(self, attention: nn.Module):
        super().__init__()
        self.attention = attention

    def forward(self, hidden_states, attention_mask=None, **kwargs):
        a = self.attention
        q, k, v = a.q_proj(hidden_states), a.k_proj(hidden_states), a.v_proj(hidden_states)
        return a.out_proj(multi_head_attention(q, k, v, a.num_heads, float(a.scaling))), None


class _ConvAsMatMul(nn.Module):
    """A Conv1d as one MatMul over `kernel` strided slices of its zero-padded, channels-last input."""

    def __init__(self, conv: nn.Conv1d):
        super().__init__()
        if conv.groups != 1 or conv.dilation[0] != 1 or not isinstance(conv.padding, tuple):
            raise ValueError(f"cannot export {conv} as a MatMul")
        self.kernel, self.stride, self.padding = conv.kernel_size[0], conv.stride[0], conv.padding[0]
        # (out, in, kernel) -> (out, kernel * in): slice j of the input meets kernel tap j
        self.register_buffer("weight", conv.weight.detach().permute(0, 2, 1).reshape(conv.out_channels, -1).clone())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time, in) -> (batch, time', out)."""
        padded = F.pad(x, (0, 0, self.padding, self.padding))
        frames = (padded.shape[1] - self.kernel) // self.stride + 1
        taps = [padded[:, j: j + self.stride * (frames - 1) + 1: self.stride] for j in range(self.kernel)]
        return F.linear(torch.cat(taps, dim=-1), self.weight, self.bias)


class _EncoderForOnnx(nn.Module):
    """The Whisper encoder's forward (transformers' own layers), one tensor in and out, with the stem
    as MatMuls and channels-last throughout. Fusing the attention is `_fused_attention`'s job."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.conv1, self.conv2 = _ConvAsMatMul(encoder.conv1), _ConvAsMatMul(encoder.conv2)

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        e = self.encoder
        x = F.gelu(self.conv1(input_features.transpose(1, 2)))
        x = F.gelu(self.conv2(x)) + e.embed_positions.weight[: e.config.max_source_positions]
        for layer in e.layers:
            x = layer(x, None)
        return e.layer_norm(x)


@contextlib.contextmanager
def _fused_attention(encoder: nn.Module):
    """Each layer's self-attention through `multi_head_attention` while exporting; restored after.

    Layers on the reduced-dimension path of LiteASR attention (rank-sized heads) keep their own graph.
    """
    originals = [layer.self_attn for layer in encoder.layers]
    try:
        for layer in encoder.layers:
            if not getattr(layer.self_attn, "uses_reduced_path", False):
                layer.self_attn = _FusedSelfAttention(layer.self_attn)
        yield
    finally:
        for layer, original in zip(encoder.layers, originals):
            layer.self_attn = original


def export_encoder(model: nn.Module, path: str | Path) -> Path:
    """Write the encoder of `model` (a Whisper model or the encoder itself) to `path` as float32 ONNX,
    batch dimension dynamic.

    Low-rank linears are exported as the plain module path (the oneDNN fast route steps aside
    under tracing), so each stays two MatMuls. The model is left as it was.
    """
    encoder = model if hasattr(model, "conv1") else encoder_of(model)
    if next(encoder.parameters()).dtype != torch.float32:
        raise ValueError("export the encoder from a float32 model (load it with dtype='float32')")
    wrapper = _EncoderForOnnx(encoder).eval()
    example = torch.zeros(2, encoder.conv1.in_channels, 2 * encoder.config.max_source_positions)
    batch = torch.export.Dim("batch", min=1, max=1024)
    path = Path(path)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad(), _fused_attention(encoder):
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter is not the user's concern
        torch.onnx.export(wrapper, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_shapes={"input_features": {0: batch}}, dynamo=True, external_data=False,
                          verbose=False, custom_translation_table=_onnx_multi_head_attention())
    return path


def int8_candidates(source: str | Path) -> dict[str, int]:
    """The MatMul nodes with constant 2-D weights, in graph order, with their weight sizes (MACs per
    row of input): what int8 quantisation can take, and what leaving each in float32 costs."""
    import onnx

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
    import tempfile

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
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the quantiser's advice to pre-process, once per call, is not for our users
    try:
        quantize_dynamic(str(source), str(target), per_channel=True, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=excluded)
    finally:
        logging.disable(previous)
    return excluded


class OnnxEncoder:
    """An ONNX Runtime session for an exported encoder: log-mel features in, encoder states out.

    An int8 encoder (dynamic quantisation) runs one clip at a time: it takes one activation scale
    per MatMul call, so in a batch the loudest clip would set every clip's int8 step and a clip's
    transcript would depend on the clips batched with it.
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnx
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
        graph = onnx.load(str(path), load_external_data=False).graph
        self.one_clip_at_a_time = any(node.op_type == "DynamicQuantizeLinear" for node in graph.node)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """(batch, n_mels, 3000) float32 -> (batch, 1500, d_model) float32, C-contiguous."""
        features = np.ascontiguousarray(features, dtype=np.float32)
        if self.one_clip_at_a_time and features.shape[0] > 1:
            return np.concatenate([self._run(features[i: i + 1]) for i in range(features.shape[0])])
        return self._run(features)

    def _run(self, features: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.session.run([OUTPUT_NAME], {INPUT_NAME: features})[0])
