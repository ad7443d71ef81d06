"""The shapes of the released Whisper architectures (no torch: the command line reads them for its help)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Architecture:
    d_model: int
    encoder_layers: int
    decoder_layers: int
    heads: int
    ffn_dim: int
    n_mels: int
    vocab_size: int


# The released OpenAI checkpoints' shapes (config.json of openai/whisper-*).
ARCHITECTURES: dict[str, Architecture] = {
    "tiny": Architecture(384, 4, 4, 6, 1536, 80, 51865),
    "base": Architecture(512, 6, 6, 8, 2048, 80, 51865),
    "small": Architecture(768, 12, 12, 12, 3072, 80, 51865),
    "medium": Architecture(1024, 24, 24, 16, 4096, 80, 51865),
    "large-v3": Architecture(1280, 32, 32, 20, 5120, 128, 51866),
    "large-v3-turbo": Architecture(1280, 32, 4, 20, 5120, 128, 51866),
}


def architecture(arch: str) -> Architecture:
    try:
        return ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}") from None
