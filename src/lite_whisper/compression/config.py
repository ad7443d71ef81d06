"""What a compression is asked to do: a frozen, validated, serialisable config with a version.

Two ways to choose ranks:
- thresholds (attention:MLP explained variance) with a rank rule: "paper", the LiteASR rule
  (explained variance of the whole spectrum), or "robust", the same measured without the few
  massive directions (always kept) that make a tiny rank "explain 99%" (METHOD §8);
- a budget: `target_params` or `target_flops`, a fraction of the dense encoder's parameters
  (positional embedding excluded) or FLOPs at 30 s. With rank rule "allocate" (the default
  with a budget) ranks are allocated across all linears by measured damage per parameter (or
  FLOP) saved; with "paper" or "robust", one threshold for all six linears is searched so that
  the rule lands as close to the budget as it can without exceeding it (the fair comparison).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lite_whisper.lowrank.targets import ATTENTION

RANK_RULES = ("paper", "robust", "allocate")  # "allocate" needs a budget
# A leading eigenvalue more than this many times the next one is a massive direction (tiny.en's last
# fc2: 8338 vs 21; the next-largest gap among its other 23 linears is 3.7x).
MASSIVE_GAP = 10.0
MAX_MASSIVE = 4  # at most this many leading directions count as massive


@dataclass(frozen=True)
class CompressionConfig:
    """How ranks are chosen: thresholds and a rank rule, or a budget; and the rank granularity."""

    attention_threshold: float = 0.99
    mlp_threshold: float = 0.999
    rank_multiple: int = 16
    rank_rule: str = "robust"  # measured better than "paper" at every size tried (docs/RESULTS.md §6)
    target_params: float | None = None
    target_flops: float | None = None
    version: int = 2  # 2: rank_rule, target_params, target_flops

    def __post_init__(self):
        for name in ("attention_threshold", "mlp_threshold"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 < value <= 1.0):
                raise ValueError(f"{name.replace('_', ' ')} must be in (0, 1], got {value!r}")
        if self.rank_multiple < 1:
            raise ValueError(f"rank multiple must be at least 1, got {self.rank_multiple}")
        if self.rank_rule not in RANK_RULES:
            raise ValueError(f"rank rule must be one of {', '.join(RANK_RULES)}, got {self.rank_rule!r}")
        if self.target_params is not None and self.target_flops is not None:
            raise ValueError("give a parameter budget or a FLOP budget, not both")
        if self.rank_rule == "allocate" and self.target_params is None and self.target_flops is None:
            raise ValueError("rank rule 'allocate' distributes a budget: give --target-params or --target-flops")
        for name in ("target_params", "target_flops"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0.0 < value < 1.0):
                raise ValueError(f"--{name.replace('_', '-')} is a fraction of the dense encoder, "
                                 f"between 0 and 1 (exclusive), got {value!r}")

    @classmethod
    def parse(cls, threshold: str | float, rank_multiple: int = 16, rank_rule: str | None = None,
              target_params: float | None = None, target_flops: float | None = None) -> "CompressionConfig":
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
        if rank_rule is None:
            rank_rule = "allocate" if (target_params is not None or target_flops is not None) else "robust"
        return cls(attention, mlp, rank_multiple, rank_rule, target_params, target_flops)

    @property
    def budget(self) -> tuple[str, float] | None:
        """("params" or "flops", fraction) when a budget is set."""
        if self.target_params is not None:
            return "params", self.target_params
        if self.target_flops is not None:
            return "flops", self.target_flops
        return None

    @property
    def label(self) -> str:
        if self.budget is not None:
            kind, fraction = self.budget
            return f"{self.rank_rule}-{kind}{fraction:g}"
        if self.attention_threshold == self.mlp_threshold:
            threshold = f"{self.attention_threshold:g}"
        else:
            threshold = f"{self.attention_threshold:g}:{self.mlp_threshold:g}"
        return threshold if self.rank_rule == "paper" else f"{self.rank_rule}-{threshold}"

    def threshold_for(self, name: str) -> float:
        return self.attention_threshold if name in ATTENTION else self.mlp_threshold

    def to_dict(self) -> dict:
        return asdict(self)
