"""The encoder as an ONNX graph (each low-rank linear stays two MatMuls).

ONNX Runtime runs the same graph about twice as fast as eager PyTorch on these CPUs
(../shared/docs/CPU_PERF.md), and keeps the low-rank structure that CTranslate2 cannot load.
The exported graph computes the encoder's function in the form ONNX Runtime runs fastest:
self-attention as its fused `MultiHeadAttention` kernel (never materialising per-head score
matrices in the graph: 18.8 instead of ~24 ms a layer on base, float32), and the two
convolutions of the stem as MatMuls over strided slices, which int8 quantisation then takes
(ONNX Runtime's int8 `ConvInteger` is four times slower than its float32 `Conv`; its int8
MatMul is about seven times faster than float32 on these CPUs).

ONNX files are protobufs, which cannot exceed 2 GB: encoders whose weights pass
`EXTERNAL_DATA_BYTES` (large-v3's 635M parameters are 2.5 GB in float32) keep their weights in
`<file>.data` beside the graph, which ONNX Runtime and OpenVINO read from the same folder.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import sys
import warnings
from pathlib import Path

import onnx
import onnxscript
import torch
import torch.nn.functional as F
from torch import nn

from lite_whisper.lowrank.cost import encoder_of, weight_bytes
from lite_whisper.runtime.onnx_encoder import INPUT_NAME, OUTPUT_NAME

# Weights above this many bytes go to an external data file: well below protobuf's 2 GB limit, since
# the graph, its constants and the quantiser's copies count too.
EXTERNAL_DATA_BYTES = 1 << 30


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

    def taps(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time, in) -> (batch, time', kernel * in): what the MatMul multiplies."""
        padded = F.pad(x, (0, 0, self.padding, self.padding))
        frames = (padded.shape[1] - self.kernel) // self.stride + 1
        return torch.cat([padded[:, j: j + self.stride * (frames - 1) + 1: self.stride] for j in range(self.kernel)],
                         dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time, in) -> (batch, time', out)."""
        return F.linear(self.taps(x), self.weight, self.bias)


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


@contextlib.contextmanager
def _quiet_logger(name: str):
    """Python logger `name` at ERROR for the block."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def quiet_export():
    """torch's ONNX exporter without its deprecation chatter and its "torchvision is not installed" lines
    (Whisper has no torchvision operator): not the user's concern."""
    with warnings.catch_warnings(), _quiet_logger("torch.onnx._internal.exporter._registration"):
        warnings.simplefilter("ignore")
        yield


def export_encoder(model: nn.Module, path: str | Path, external_data_bytes: int = EXTERNAL_DATA_BYTES) -> Path:
    """Write the encoder of `model` (a Whisper model or the encoder itself) to `path` as float32 ONNX,
    batch dimension dynamic; weights in `<path>.data` when they pass `external_data_bytes`.

    Low-rank linears are exported as their plain modules (the fast CPU route steps aside while
    torch exports), so each stays two MatMuls. The model is left as it was.
    """
    encoder = encoder_of(model)
    if next(encoder.parameters()).dtype != torch.float32:
        raise ValueError("export the encoder from a float32 model (load it with dtype='float32')")
    wrapper = _EncoderForOnnx(encoder).eval()
    example = torch.zeros(2, encoder.conv1.in_channels, 2 * encoder.config.max_source_positions)
    batch = torch.export.Dim("batch", min=1, max=1024)
    path = Path(path)
    with quiet_export(), torch.inference_mode(False), torch.no_grad(), _fused_attention(encoder):
        torch.onnx.export(wrapper, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_shapes={"input_features": {0: batch}}, dynamo=True,
                          external_data=weight_bytes(encoder) > external_data_bytes,
                          verbose=False, custom_translation_table=_onnx_multi_head_attention())
    return path


def export_encoder_apart(model: nn.Module, path: str | Path, external_data_bytes: int = EXTERNAL_DATA_BYTES) -> Path:
    """`export_encoder` in a forked child process, where Linux allows it; in this one elsewhere.

    torch's ONNX exporter (torch 2.13, `dynamo=True`) keeps the weights it exported alive after it returns, held
    from C++ where no garbage collection reaches: a process that exports large-v3-turbo's encoder can never give
    its 2.5 GB back (docs/RESULTS.md §12). A forked child shares the parent's weights page by page without copying
    them, writes the file and takes what it kept with it when it exits. The child runs one thread: torch's OpenMP
    pool is not carried across fork."""
    if not sys.platform.startswith("linux") or torch.cuda.is_initialized():
        return export_encoder(model, path, external_data_bytes)
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_export_in_child, args=(model, path, external_data_bytes, send), daemon=True)
    child.start()
    send.close()
    try:
        failure = receive.recv()
    except EOFError:
        failure = "the exporting process died without a word"
    child.join()
    if failure or child.exitcode != 0:
        raise RuntimeError(f"exporting the encoder to ONNX failed: {failure or f'exit code {child.exitcode}'}")
    return Path(path)


def _export_in_child(model, path, external_data_bytes, send) -> None:
    try:
        torch.set_num_threads(1)
        export_encoder(model, path, external_data_bytes)
        send.send("")
    except BaseException as error:  # reported to the parent, which raises
        send.send(f"{type(error).__name__}: {error}")
    finally:
        send.close()
        os._exit(0)  # no interpreter teardown: nothing the parent owns is flushed or closed twice
