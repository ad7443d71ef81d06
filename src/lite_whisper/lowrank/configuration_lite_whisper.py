"""The lite-whisper configuration: Whisper's, plus the rank of every low-rank encoder linear.

Self-contained (transformers and the standard library only): copied into every saved folder
beside `modeling_lite_whisper.py`, so `AutoConfig`/`AutoModel` with
`trust_remote_code=True` work where lite_whisper is not installed.
"""

from __future__ import annotations

from transformers import WhisperConfig

# The one target table: module short name -> (path inside an encoder layer, group).
LOW_RANK_TARGETS: dict[str, tuple[str, str]] = {
    "q_proj": ("self_attn.q_proj", "attention"),
    "k_proj": ("self_attn.k_proj", "attention"),
    "v_proj": ("self_attn.v_proj", "attention"),
    "out_proj": ("self_attn.out_proj", "attention"),
    "fc1": ("fc1", "mlp"),
    "fc2": ("fc2", "mlp"),
}


class _ModelType:
    """`model_type` that reads "lite-whisper" on the class and "whisper" on instances.

    The class value is what config.json and the Auto classes see (the authors' format).
    transformers switches Whisper-only behaviour on `config.model_type == "whisper"` (the ASR
    pipeline's timestamps and chunking, decoder prompts in `generate`); a lite-whisper model
    needs all of it, so instances answer "whisper". Assignments (from_dict passes the stored
    value back) are ignored.
    """

    def __get__(self, instance, owner) -> str:
        return "lite-whisper" if instance is None else "whisper"

    def __set__(self, instance, value) -> None:
        pass


class LiteWhisperConfig(WhisperConfig):
    """Whisper config plus `low_rank_config`: one {short name: rank} dict per encoder layer."""

    model_type = _ModelType()
    low_rank_config: list[dict[str, int]] | None = None

    @classmethod
    def from_whisper(cls, config: WhisperConfig, low_rank_config: list[dict[str, int]]) -> "LiteWhisperConfig":
        """`config`'s settings with these per-layer ranks (and this class's model type and architectures)."""
        replaced = ("model_type", "architectures", "low_rank_config")
        settings = {key: value for key, value in config.to_dict().items() if key not in replaced}
        return cls(**settings, low_rank_config=low_rank_config)
