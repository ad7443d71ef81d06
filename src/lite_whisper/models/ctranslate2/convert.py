"""Convert a CTranslate2 / faster-whisper Whisper folder to `transformers`, in memory."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

from lite_whisper.models.ctranslate2.format import CT2Model, find_model_bin, read_json, read_model_bin
from lite_whisper.models.ctranslate2.tokenizer import build_tokenizer, generation_config


def ctranslate2_to_transformers(
    folder: Path | str, extra_part_dirs: Iterable[Path | str] = (), dtype: torch.dtype = torch.float32
):
    """Convert a CTranslate2 Whisper folder to `(WhisperForConditionalGeneration, WhisperProcessor)`.

    `extra_part_dirs` hold further `model.bin.partN` files (models split across packages).
    """

    folder = Path(folder)
    ct2 = read_model_bin(find_model_bin(folder, extra_part_dirs))
    if ct2.spec_name != "WhisperSpec":
        raise ValueError(f"{folder}: spec {ct2.spec_name!r} is not a Whisper model")
    settings = read_json(folder / "config.json")
    tokenizer = build_tokenizer(folder / "tokenizer.json", vocab_size=ct2.get("decoder/embeddings/weight").shape[0])
    config = whisper_config(ct2, tokenizer)
    model = _build_model(config, transformers_state_dict(ct2), dtype)
    model.generation_config = generation_config(config, tokenizer, settings)
    processor = WhisperProcessor(feature_extractor=_feature_extractor(config.num_mel_bins), tokenizer=tokenizer)
    return model, processor


def _count_layers(ct2: CT2Model, stack: str) -> int:
    pattern = re.compile(rf"^{stack}/layer_(\d+)/")
    found = {int(m.group(1)) for name in ct2.variables if (m := pattern.match(name))}
    if found != set(range(len(found))):
        raise ValueError(f"{stack} layers are not numbered 0..N-1: {sorted(found)}")
    return len(found)


def _scalar(ct2: CT2Model, name: str) -> int:
    if name not in ct2.variables:
        raise ValueError(f"model.bin has no {name}: not a Whisper model?")
    return int(ct2.variables[name])


def whisper_config(ct2: CT2Model, tokenizer):
    """A `WhisperConfig` from variable shapes and scalars, with the tokenizer's special ids."""

    # Whisper's WhisperSpec stores these for the decoder only; the encoder is fixed GELU/pre-norm.
    for name, expected in (("decoder/activation", 3), ("decoder/pre_norm", 1), ("decoder/scale_embeddings", 0)):
        if name in ct2.variables and int(ct2.variables[name]) != expected:
            raise ValueError(f"{name} = {int(ct2.variables[name])}, expected {expected} as in Whisper")
    conv1 = ct2.get("encoder/conv1/weight")
    eot, sot = (tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|startoftranscript|>"))
    return WhisperConfig(
        vocab_size=ct2.get("decoder/embeddings/weight").shape[0],
        num_mel_bins=conv1.shape[1],
        d_model=conv1.shape[0],
        encoder_layers=_count_layers(ct2, "encoder"),
        decoder_layers=_count_layers(ct2, "decoder"),
        encoder_attention_heads=_scalar(ct2, "encoder/num_heads"),
        decoder_attention_heads=_scalar(ct2, "decoder/num_heads"),
        encoder_ffn_dim=ct2.get("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=ct2.get("decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=ct2.get("encoder/position_encodings/encodings").shape[0],
        max_target_positions=ct2.get("decoder/position_encodings/encodings").shape[0],
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        tie_word_embeddings=_projection_is_tied(ct2),
    )


def _projection_is_tied(ct2: CT2Model) -> bool:
    name = "decoder/projection/weight"
    return name not in ct2.variables or np.array_equal(ct2.variables[name], ct2.get("decoder/embeddings/weight"))


def _dequantized(ct2: CT2Model, name: str) -> np.ndarray:
    """A weight as float32; int8/int16 weights are divided by their scale (per output row or global)."""
    value = ct2.get(name)
    scale_name = name + "_scale"
    if scale_name in ct2.variables:
        scale = ct2.variables[scale_name].astype(np.float32)
        scale = scale.reshape(scale.shape + (1,) * (value.ndim - scale.ndim))
        return value.astype(np.float32) / scale
    if value.dtype.kind in "iu":
        raise ValueError(f"{name}: integer weight without {scale_name}")
    return value.astype(np.float32)


def _linear(ct2: CT2Model, src: str, dst: str, out: dict[str, np.ndarray]) -> None:
    out[f"{dst}.weight"] = _dequantized(ct2, f"{src}/weight")
    if f"{src}/bias" in ct2.variables:
        out[f"{dst}.bias"] = ct2.get(f"{src}/bias").astype(np.float32)


def _layer_norm(ct2: CT2Model, src: str, dst: str, out: dict[str, np.ndarray]) -> None:
    out[f"{dst}.weight"] = ct2.get(f"{src}/gamma").astype(np.float32)
    out[f"{dst}.bias"] = ct2.get(f"{src}/beta").astype(np.float32)


def _split_linear(ct2: CT2Model, src: str, dsts: Sequence[str], out: dict[str, np.ndarray]) -> None:
    """Split a fused projection (q|k|v or k|v) into equal blocks of output rows.

    Whisper's `k_proj` has no bias: CTranslate2 stores zeros, and a constant key bias cancels
    in the softmax anyway, so dropping it is exact.
    """
    fused: dict[str, np.ndarray] = {}
    _linear(ct2, src, "fused", fused)
    weights = np.split(fused["fused.weight"], len(dsts))
    biases = np.split(fused["fused.bias"], len(dsts)) if "fused.bias" in fused else [None] * len(dsts)
    for dst, weight, bias in zip(dsts, weights, biases):
        out[f"{dst}.weight"] = weight
        if bias is not None and not dst.endswith("k_proj"):
            out[f"{dst}.bias"] = bias


def transformers_state_dict(ct2: CT2Model) -> dict[str, torch.Tensor]:
    """Hugging Face `WhisperForConditionalGeneration` weights (float32) from CTranslate2 variables."""
    out: dict[str, np.ndarray] = {}
    for conv in ("conv1", "conv2"):
        _linear(ct2, f"encoder/{conv}", f"model.encoder.{conv}", out)
    for stack in ("encoder", "decoder"):
        out[f"model.{stack}.embed_positions.weight"] = ct2.get(f"{stack}/position_encodings/encodings").astype(np.float32)
        _layer_norm(ct2, f"{stack}/layer_norm", f"model.{stack}.layer_norm", out)
        for i in range(_count_layers(ct2, stack)):
            _map_layer(ct2, f"{stack}/layer_{i}", f"model.{stack}.layers.{i}", stack == "decoder", out)
    out["model.decoder.embed_tokens.weight"] = _dequantized(ct2, "decoder/embeddings/weight")
    if not _projection_is_tied(ct2):
        out["proj_out.weight"] = _dequantized(ct2, "decoder/projection/weight")
    return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in out.items()}


def _map_layer(ct2: CT2Model, src: str, dst: str, is_decoder: bool, out: dict[str, np.ndarray]) -> None:
    attn = f"{dst}.self_attn"
    _split_linear(ct2, f"{src}/self_attention/linear_0", [f"{attn}.q_proj", f"{attn}.k_proj", f"{attn}.v_proj"], out)
    _linear(ct2, f"{src}/self_attention/linear_1", f"{attn}.out_proj", out)
    _layer_norm(ct2, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", out)
    if is_decoder:
        cross = f"{dst}.encoder_attn"
        _linear(ct2, f"{src}/attention/linear_0", f"{cross}.q_proj", out)
        _split_linear(ct2, f"{src}/attention/linear_1", [f"{cross}.k_proj", f"{cross}.v_proj"], out)
        _linear(ct2, f"{src}/attention/linear_2", f"{cross}.out_proj", out)
        _layer_norm(ct2, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm", out)
    _linear(ct2, f"{src}/ffn/linear_0", f"{dst}.fc1", out)
    _linear(ct2, f"{src}/ffn/linear_1", f"{dst}.fc2", out)
    _layer_norm(ct2, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm", out)


def _build_model(config, state_dict: dict[str, torch.Tensor], dtype: torch.dtype):
    """Instantiate without random init (meta device), then assign the converted weights."""

    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    result = model.load_state_dict(state_dict, strict=False, assign=True)
    missing = set(result.missing_keys) - ({"proj_out.weight"} if config.tie_word_embeddings else set())
    if missing or result.unexpected_keys:
        raise ValueError(f"conversion mismatch: missing {sorted(missing)}, unexpected {sorted(result.unexpected_keys)}")
    if config.tie_word_embeddings:
        model.proj_out.weight = model.model.decoder.embed_tokens.weight
    still_meta = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if still_meta:
        raise ValueError(f"conversion left uninitialised tensors: {still_meta}")
    return model.to(dtype).eval()



def _feature_extractor(n_mels: int):

    return WhisperFeatureExtractor(feature_size=n_mels)
