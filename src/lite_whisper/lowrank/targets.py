"""The one table of what is compressed: six linears in every Whisper encoder layer.

Short name -> (path inside a transformers `WhisperEncoderLayer`, group). The group picks
the threshold (attention or MLP, METHOD §3). The table itself lives in the self-contained
modeling file (saved folders need it without this package); this module re-exports it
with the two groups.
"""

from __future__ import annotations

from lite_whisper.lowrank.modeling_lite_whisper import LOW_RANK_TARGETS

ATTENTION: tuple[str, ...] = tuple(name for name, (_, group) in LOW_RANK_TARGETS.items() if group == "attention")
MLP: tuple[str, ...] = tuple(name for name, (_, group) in LOW_RANK_TARGETS.items() if group == "mlp")

__all__ = ["ATTENTION", "LOW_RANK_TARGETS", "MLP"]
