"""What a compression did, for people (a table) and for machines (JSON)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import WhisperForConditionalGeneration

from lite_whisper.compression.decomposition import ModuleDecision
from lite_whisper.files import write_json_atomic
from lite_whisper.lowrank.convert import dense_config
from lite_whisper.lowrank.cost import encoder_flops, encoder_of, encoder_params, is_low_rank, reduced_attention_layers
from lite_whisper.lowrank.targets import LOW_RANK_TARGETS
from lite_whisper.models.model_card import REPORT_FILE  # noqa: F401 (where callers find it)



@dataclass(frozen=True)
class ModuleReport:
    rank: int | None  # None: left dense
    explained_variance: float | None  # share of output variance kept; None when unknown
    d_in: int
    d_out: int
    reason: str

    @classmethod
    def of(cls, decision: ModuleDecision) -> "ModuleReport":
        return cls(decision.rank, decision.explained_variance, decision.d_in, decision.d_out, decision.reason)


@dataclass
class CompressionReport:
    model: str
    threshold: str
    attention_threshold: float | None
    mlp_threshold: float | None
    rank_multiple: int | None
    calibration_data: str
    calibration_clips: int
    calibration_frames: int
    exclude_padding: bool
    encoder_params_before: int
    encoder_params_after: int
    encoder_flops_before: int
    encoder_flops_after: int
    layers: list[dict[str, ModuleReport]]
    reduced_attention_layers: list[int] = field(default_factory=list)
    wall_seconds: float = 0.0  # compress(): factorisation only; the CLI: loading + calibration + factorisation
    peak_rss_mb: float = 0.0  # peak resident memory of the process so far
    config: dict = field(default_factory=dict)  # CompressionConfig.to_dict(), with its version
    lite_whisper_version: str = ""
    calibration_seconds: float | None = None  # loading or calibrating the statistics (the CLI and sweep)
    rank_rule: str = "paper"  # "paper", "robust" or "budget"
    budget: dict | None = None  # kind, target, achieved fraction, how damage was estimated, sensitivities
    factorisation_seconds: float | None = None  # compress() alone: decompositions, allocation, factors
    distillation: dict | None = None  # DistillReport.to_dict() when the factors were trained afterwards

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "CompressionReport":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: unreadable compression report ({error})") from None
        data["layers"] = [{name: ModuleReport(**entry) for name, entry in layer.items()} for layer in data["layers"]]
        return cls(**data)

    def table(self) -> str:
        names = list(self.layers[0]) if self.layers else []
        lines = [f"{'layer':>5}  " + "  ".join(f"{name:>16}" for name in names)]
        for index, layer in enumerate(self.layers):
            cells = []
            for name in names:
                entry = layer[name]
                variance = "" if entry.explained_variance is None else f" {100 * entry.explained_variance:5.1f}%"
                cells.append(f"{('r=' + str(entry.rank)) if entry.rank else 'dense':>9}{variance:>7}")
            lines.append(f"{index:>5}  " + "  ".join(cells))
        params = self.encoder_params_after / self.encoder_params_before
        flops = self.encoder_flops_after / self.encoder_flops_before
        lines += [
            "",
            (f"threshold {self.threshold} (attention {self.attention_threshold}, mlp {self.mlp_threshold}), "
             f"rank rule {self.rank_rule}, ranks in multiples of {self.rank_multiple}") if self.budget is None else
            (f"budget: {self.budget['kind']} {self.budget['target']:g} of the dense encoder, allocated "
             f"{self.budget['achieved']:.4f} ({self.budget['estimate']}), ranks in multiples of {self.rank_multiple}"),
            f"encoder parameters  {self.encoder_params_before / 1e6:8.2f}M -> {self.encoder_params_after / 1e6:8.2f}M  ({100 * params:.1f}%)",
            f"encoder GFLOPs/30 s {self.encoder_flops_before / 1e9:8.2f}  -> {self.encoder_flops_after / 1e9:8.2f}   ({100 * flops:.1f}%)",
            f"reduced-dimension attention in layers: {self.reduced_attention_layers or 'none'}",
            f"calibration: {self.calibration_clips} clips, {self.calibration_frames} audio frames"
            f"{' (padding excluded)' if self.exclude_padding else ' (padding included)'}"
            + (f" from {self.calibration_data}" if self.calibration_data else ""),
            f"wall time {self.wall_seconds:.1f} s{self._time_split()}, peak memory {self.peak_rss_mb:.0f} MB",
        ]
        if self.distillation:
            d = self.distillation
            held = ("" if d["holdout_before"] is None else
                    f", held-out error {d['holdout_before']:.4g} -> {d['holdout_after']:.4g} (kept step {d['best_step']})")
            lines.append(f"distillation: {d['steps']} steps on {d['train_clips']} clips, training error "
                         f"{d['loss_first']:.4g} -> {d['loss_last']:.4g}{held}, {d['seconds']:.0f} s")
        return "\n".join(lines)

    def _time_split(self) -> str:
        parts = [f"{label} {seconds:.1f} s" for label, seconds in
                 (("statistics", self.calibration_seconds), ("factorisation", self.factorisation_seconds),
                  ("distillation", (self.distillation or {}).get("seconds")))
                 if seconds is not None]
        return f" ({', '.join(parts)})" if parts else ""


def structural_report(model, model_name: str = "") -> CompressionReport:
    """What can be read off a model alone: ranks, parameters, FLOPs (no calibration facts).

    "Before" figures are those of the same architecture with every linear dense.
    """
    with torch.device("meta"):  # shapes only, no memory
        dense = WhisperForConditionalGeneration(dense_config(model.config))
    layers = []
    for layer in encoder_of(model).layers:
        entries = {}
        for name, (path, _) in LOW_RANK_TARGETS.items():
            module = layer.get_submodule(path)
            rank = module.rank if is_low_rank(module) else None
            entries[name] = ModuleReport(rank, None, module.in_features, module.out_features,
                                         "factorised" if rank else "dense")
        layers.append(entries)
    return CompressionReport(
        model=model_name, threshold="unknown", attention_threshold=None, mlp_threshold=None, rank_multiple=None,
        calibration_data="", calibration_clips=0, calibration_frames=0, exclude_padding=False,
        encoder_params_before=encoder_params(dense), encoder_params_after=encoder_params(model),
        encoder_flops_before=encoder_flops(dense), encoder_flops_after=encoder_flops(model),
        layers=layers,
        reduced_attention_layers=reduced_attention_layers(model),
    )
