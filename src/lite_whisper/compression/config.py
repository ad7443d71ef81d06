"""What a compression is asked to do: a frozen, validated, serialisable config with a version."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lite_whisper.compression.targets import ATTENTION


@dataclass(frozen=True)
class CompressionConfig:
    """Explained-variance thresholds (attention projections, MLP) and the rank granularity."""

    attention_threshold: float = 0.99
    mlp_threshold: float = 0.999
    rank_multiple: int = 16
    version: int = 1

    def __post_init__(self):
        for name in ("attention_threshold", "mlp_threshold"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 < value <= 1.0):
                raise ValueError(f"{name.replace('_', ' ')} must be in (0, 1], got {value!r}")
        if self.rank_multiple < 1:
            raise ValueError(f"rank multiple must be at least 1, got {self.rank_multiple}")

    @classmethod
    def parse(cls, threshold: str | float, rank_multiple: int = 16) -> "CompressionConfig":
        """'0.99' (all six linears) or '0.99:0.999' (attention:MLP)."""
        text = str(threshold).strip()
        parts = text.split(":")
        if len(parts) not in (1, 2) or not all(parts):
            raise ValueError(f"threshold {text!r}: expected a number like 0.99 or ATTN:MLP like 0.99:0.999")
        try:
            values = [float(part) for part in parts]
        except ValueError:
            raise ValueError(f"threshold {text!r}: expected a number like 0.99 or ATTN:MLP like 0.99:0.999") from None
        attention, mlp = values if len(values) == 2 else values * 2
        return cls(attention, mlp, rank_multiple)

    @property
    def label(self) -> str:
        if self.attention_threshold == self.mlp_threshold:
            return f"{self.attention_threshold:g}"
        return f"{self.attention_threshold:g}:{self.mlp_threshold:g}"

    def threshold_for(self, name: str) -> float:
        return self.attention_threshold if name in ATTENTION else self.mlp_threshold

    def to_dict(self) -> dict:
        return asdict(self)
