"""The Whisper decoder as optimum's merged ONNX graph (`decoder_model_merged.onnx`).

optimum, and transformers.js after it, run a seq2seq decoder as one graph with a boolean
`use_cache_branch` input choosing between two subgraphs that share the weights:

- no past (the first step): `input_ids` and `encoder_hidden_states` in; `logits` and every
  layer's self-attention keys/values *and* cross-attention keys/values out;
- with past (every later step): `input_ids` and the cache in; the self-attention cache grows by
  the new tokens and the cross-attention cache passes through unchanged.

Names and axes are optimum's (`WhisperOnnxConfig`): inputs `input_ids`, `encoder_hidden_states`,
`past_key_values.{i}.{decoder,encoder}.{key,value}`, `use_cache_branch`; outputs `logits`,
`present.{i}.{decoder,encoder}.{key,value}`, each cache tensor (batch, heads, length, head_dim)
with heads and head_dim fixed (transformers.js sizes its empty first-step cache from them).

The decoder is written out here rather than traced through transformers' `WhisperDecoder`,
whose cache objects the exporter cannot follow; `decoder_step` is checked against the model's
own forward in the tests. Each branch is exported by torch's exporter, then merged under one
`If` node with the weights (named after the parameters) stored once.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from torch import nn

from lite_whisper.deploy.int8 import quantize_decoder
from lite_whisper.deploy.onnx_graph import quiet_export
from lite_whisper.runtime.optimum_onnx import ENCODER_STATES, INPUT_IDS, LOGITS, USE_CACHE

KINDS = ("decoder.key", "decoder.value", "encoder.key", "encoder.value")


def cache_names(layers: int, prefix: str) -> list[str]:
    """`prefix.{i}.{decoder,encoder}.{key,value}` in optimum's order (layer by layer)."""
    return [f"{prefix}.{i}.{kind}" for i in range(layers) for kind in KINDS]


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, length, heads * dim) -> (batch, heads, length, dim)."""
    return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)


def decoder_step(decoder: nn.Module, output_projection: torch.Tensor, input_ids: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None, past: list[torch.Tensor] | None):
    """Whisper's decoder on `input_ids` after `past` (4 tensors a layer, or None for the first step).

    `output_projection` is (d_model, vocabulary): the transposed token embedding. Returns (logits,
    cache): the cache in `KINDS` order per layer, self-attention grown by the new
    tokens, cross-attention computed from `encoder_hidden_states` on the first step, else passed on.
    """
    past_length = 0 if past is None else past[0].shape[2]
    length = input_ids.shape[1]
    hidden = decoder.embed_tokens(input_ids) + decoder.embed_positions.weight[past_length: past_length + length]
    # query i sits at position past_length + i and sees keys 0 .. past_length + i
    query_positions = torch.arange(length, device=input_ids.device) + past_length
    causal = torch.arange(past_length + length, device=input_ids.device)[None, :] <= query_positions[:, None]
    cache = []
    for i, layer in enumerate(decoder.layers):
        attention = layer.self_attn
        heads = attention.num_heads
        x = layer.self_attn_layer_norm(hidden)
        query = _heads(attention.q_proj(x), heads)
        key, value = _heads(attention.k_proj(x), heads), _heads(attention.v_proj(x), heads)
        if past is not None:
            key, value = torch.cat([past[4 * i], key], dim=2), torch.cat([past[4 * i + 1], value], dim=2)
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=causal, scale=attention.scaling)
        hidden = hidden + attention.out_proj(_merge_heads(attended))

        cross = layer.encoder_attn
        x = layer.encoder_attn_layer_norm(hidden)
        query = _heads(cross.q_proj(x), heads)
        if past is None:
            cross_key = _heads(cross.k_proj(encoder_hidden_states), heads)
            cross_value = _heads(cross.v_proj(encoder_hidden_states), heads)
        else:
            cross_key, cross_value = past[4 * i + 2], past[4 * i + 3]
        attended = F.scaled_dot_product_attention(query, cross_key, cross_value, scale=cross.scaling)
        hidden = hidden + cross.out_proj(_merge_heads(attended))

        x = layer.final_layer_norm(hidden)
        hidden = hidden + layer.fc2(layer.activation_fn(layer.fc1(x)))
        cache += [key, value, cross_key, cross_value]
    return decoder.layer_norm(hidden) @ output_projection, cache


class _FirstStep(nn.Module):
    """`untied`: the output projection as its own (d_model, vocabulary) weight, which the int8 quantiser
    can take (tied, the graph transposes the token embedding and the quantiser leaves it float32)."""

    def __init__(self, decoder: nn.Module, proj_out: torch.Tensor, untied: bool = False):
        super().__init__()
        self.decoder = decoder
        if untied:
            self.register_buffer("output_projection", proj_out.detach().t().contiguous())
        else:
            self.proj_out = proj_out

    def projection(self) -> torch.Tensor:
        return self.output_projection if hasattr(self, "output_projection") else self.proj_out.t()

    def forward(self, input_ids, encoder_hidden_states):
        logits, cache = decoder_step(self.decoder, self.projection(), input_ids, encoder_hidden_states, None)
        return logits, *cache


class _NextStep(_FirstStep):
    def forward(self, input_ids, *past):
        logits, cache = decoder_step(self.decoder, self.projection(), input_ids, None, list(past))
        # the cross-attention cache does not change: the merged graph passes the inputs on itself
        return logits, *[t for i, t in enumerate(cache) if i % 4 < 2]


def _parts(model: nn.Module) -> tuple[nn.Module, nn.Parameter]:
    decoder = model.model.decoder if hasattr(model, "model") else model.get_decoder()
    return decoder, model.get_output_embeddings().weight


def _export(module: nn.Module, args: tuple, names_in: list[str], names_out: list[str], dynamic: dict,
            path: Path) -> None:
    with quiet_export(), torch.inference_mode(False), torch.no_grad():
        torch.onnx.export(module, args, str(path), input_names=names_in, output_names=names_out,
                          dynamic_shapes=dynamic, dynamo=True, verbose=False)


def export_decoder(model: nn.Module, path: str | Path, int8_path: str | Path | None = None) -> Path:
    """Write `model`'s decoder (float32) to `path` as optimum's merged decoder, and to `int8_path` (when
    given) with 8-bit weights (`int8.quantize_decoder`); return `path`.

    Each branch is quantised before the merge: ONNX Runtime's quantiser does not reach weights that
    live outside an `If`'s subgraphs.
    """
    decoder, proj_out = _parts(model)
    if proj_out.dtype != torch.float32:
        raise ValueError("export the decoder from a float32 model (load it with dtype='float32')")
    config = model.config
    layers, heads = config.decoder_layers, config.decoder_attention_heads
    head_dim = config.d_model // heads
    batch = torch.export.Dim("batch_size", min=1, max=1024)
    tokens = torch.export.Dim("decoder_sequence_length", min=1, max=config.max_target_positions)
    past_tokens = torch.export.Dim("past_decoder_sequence_length", min=1, max=config.max_target_positions)
    frames = torch.export.Dim("encoder_sequence_length", min=1, max=config.max_source_positions)
    ids = torch.full((2, 3), 50257, dtype=torch.long)
    states = torch.zeros(2, 7, config.d_model)
    past = [torch.zeros(2, heads, 5 if kind.startswith("decoder") else 7, head_dim)
            for _ in range(layers) for kind in KINDS]
    past_axes = [{0: batch, 2: past_tokens if kind.startswith("decoder") else frames}
                 for _ in range(layers) for kind in KINDS]
    present = [n for n in cache_names(layers, "present") if ".decoder." in n]

    def branches(folder: Path, untied: bool) -> tuple[Path, Path]:
        first, following = folder / "first.onnx", folder / "next.onnx"
        _export(_FirstStep(decoder, proj_out, untied).eval(), (ids, states), [INPUT_IDS, ENCODER_STATES],
                [LOGITS, *cache_names(layers, "present")],
                {"input_ids": {0: batch, 1: tokens}, "encoder_hidden_states": {0: batch, 1: frames}}, first)
        _export(_NextStep(decoder, proj_out, untied).eval(), (ids, *past),
                [INPUT_IDS, *cache_names(layers, "past_key_values")], [LOGITS, *present],
                {"input_ids": {0: batch, 1: tokens}, "past": tuple(past_axes)}, following)
        return first, following

    def merge(first: Path, following: Path, target: Path) -> None:
        onnx.save(merge_decoders(onnx.load(str(first)), onnx.load(str(following)), layers, heads, head_dim),
                  str(target))

    with tempfile.TemporaryDirectory(prefix="lite-whisper-decoder-") as scratch:
        (Path(scratch) / "float32").mkdir()
        merge(*branches(Path(scratch) / "float32", untied=False), Path(path))
        if int8_path is not None:
            (Path(scratch) / "int8").mkdir()
            quantised = []
            for branch in branches(Path(scratch) / "int8", untied=True):
                quantised.append(branch.with_suffix(".int8.onnx"))
                quantize_decoder(branch, quantised[-1])
            merge(*quantised, Path(int8_path))
    return Path(path)


def merge_decoders(first: onnx.ModelProto, following: onnx.ModelProto, layers: int, heads: int,
                   head_dim: int) -> onnx.ModelProto:
    """One graph: `If(use_cache_branch)` over the following-step graph (then) and the first-step graph
    (else), weights shared in the outer graph, inputs and outputs under optimum's names and axes."""
    outer: dict[str, onnx.TensorProto] = {}
    by_content: dict[tuple, str] = {}  # the exporter names its pre-transposed weights val_N: equal only in content
    branches = []
    for tag, model in (("first", first), ("next", following)):
        graph = model.graph
        boundary = {v.name for v in graph.input} | {v.name for v in graph.output}
        rename = {}
        local = []
        for tensor in graph.initializer:
            small = len(tensor.dims) == 0 or (len(tensor.dims) == 1 and tensor.data_type in (6, 7))
            if small:  # scalars and shape vectors stay in their branch (ONNX Runtime prefers it; optimum does the same)
                rename[tensor.name] = f"{tag}/{tensor.name}"
                local.append(_renamed(tensor, rename[tensor.name]))
                continue
            content = (tensor.data_type, tuple(tensor.dims), hashlib.sha1(_renamed(tensor, "").SerializeToString()).digest())
            if content not in by_content:
                name = tensor.name if tensor.name not in outer else f"{tag}/{tensor.name}"
                by_content[content] = name
                outer[name] = _renamed(tensor, name)
            rename[tensor.name] = by_content[content]
        for node in graph.node:
            if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
                raise ValueError(f"cannot merge a decoder graph with control flow ({node.op_type})")
        # every value made inside a branch gets the branch's prefix, so nothing shadows the outer scope
        for node in graph.node:
            node.input[:] = [_name(n, boundary, rename, tag) for n in node.input]
            node.output[:] = [_name(n, boundary, rename, tag) for n in node.output]
        value_info = []
        for info in graph.value_info:
            info.name = _name(info.name, boundary, rename, tag)
            value_info.append(info)
        branches.append((graph, local, value_info))

    (first_graph, first_local, first_info), (next_graph, next_local, next_info) = branches
    # the cross-attention cache goes through the following steps unchanged
    passthrough = [onnx.helper.make_node("Identity", [name.replace("present", "past_key_values", 1)], [name],
                                         name=f"next/pass/{name}")
                   for name in cache_names(layers, "present") if ".encoder." in name]
    outputs = _outputs(layers, heads, head_dim, first.graph.output[0].type.tensor_type.shape.dim[-1].dim_value)
    else_branch = onnx.helper.make_graph(list(first_graph.node), "no_past", [], outputs,
                                         initializer=first_local, value_info=first_info)
    then_branch = onnx.helper.make_graph(list(next_graph.node) + passthrough, "with_past", [], outputs,
                                         initializer=next_local, value_info=next_info)
    branch = onnx.helper.make_node("If", [USE_CACHE], [o.name for o in outputs], name="use_cache_branch_if",
                                   then_branch=then_branch, else_branch=else_branch)
    inputs = _inputs(layers, heads, head_dim)
    graph = onnx.helper.make_graph([branch], "decoder_model_merged", inputs, outputs,
                                   initializer=list(outer.values()))
    opsets = {o.domain: o.version for o in list(first.opset_import) + list(following.opset_import)}
    merged = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in opsets.items()],
                                    producer_name="lite-whisper")
    merged.ir_version = max(first.ir_version, following.ir_version)
    onnx.checker.check_model(merged)
    return merged


def _renamed(tensor: onnx.TensorProto, name: str) -> onnx.TensorProto:
    copy = onnx.TensorProto()
    copy.CopyFrom(tensor)
    copy.name = name
    return copy


def _name(name: str, boundary: set[str], rename: dict[str, str], tag: str) -> str:
    if not name or name in boundary:
        return name
    return rename.get(name, f"{tag}/{name}")


def _cache_info(name: str, heads: int, head_dim: int, length: str) -> onnx.ValueInfoProto:
    return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["batch_size", heads, length, head_dim])


def _inputs(layers: int, heads: int, head_dim: int) -> list[onnx.ValueInfoProto]:
    inputs = [onnx.helper.make_tensor_value_info(INPUT_IDS, onnx.TensorProto.INT64, ["batch_size", "decoder_sequence_length"]),
              onnx.helper.make_tensor_value_info(ENCODER_STATES, onnx.TensorProto.FLOAT,
                                                 ["batch_size", "encoder_sequence_length", heads * head_dim])]
    for name in cache_names(layers, "past_key_values"):
        length = "past_decoder_sequence_length" if ".decoder." in name else "encoder_sequence_length"
        inputs.append(_cache_info(name, heads, head_dim, length))
    inputs.append(onnx.helper.make_tensor_value_info(USE_CACHE, onnx.TensorProto.BOOL, [1]))
    return inputs


def _outputs(layers: int, heads: int, head_dim: int, vocabulary: int) -> list[onnx.ValueInfoProto]:
    outputs = [onnx.helper.make_tensor_value_info(LOGITS, onnx.TensorProto.FLOAT,
                                                  ["batch_size", "decoder_sequence_length", vocabulary])]
    for name in cache_names(layers, "present"):
        length = ("past_decoder_sequence_length + decoder_sequence_length" if ".decoder." in name
                  else "encoder_sequence_length")
        outputs.append(_cache_info(name, heads, head_dim, length))
    return outputs
