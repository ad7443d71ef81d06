"""LiteASR compression: choose ranks from calibration statistics, factorise, build the lite model.

    statistics = calibrate(model, processor, "calibration.txt")
    lite, report = compress(model, statistics, CompressionConfig.parse("0.99:0.999"))

Each step is separate so that one calibration serves many compressions (`sweep`).
"""

from __future__ import annotations

import time

import torch

from lite_whisper import __version__
from lite_whisper.compression.config import CompressionConfig
from lite_whisper.compression.decomposition import ModuleDecision, decide_layer, low_rank_factors, principal_basis
from lite_whisper.compression.report import CompressionReport, ModuleReport, peak_rss_mb
from lite_whisper.compression.statistics import CalibrationStatistics
from lite_whisper.compression.targets import LOW_RANK_TARGETS
from lite_whisper.evaluation.cost import encoder_flops, encoder_of, encoder_params, reduced_attention_layers
from lite_whisper.lowrank.convert import to_lite_whisper


class AlreadyCompressedError(ValueError):
    """The model given to compress already has low-rank linears."""


def check_dense(model, model_name: str = "") -> None:
    """Raise AlreadyCompressedError when `model`'s encoder already has low-rank linears."""
    low_rank = [
        f"{index}.{name}"
        for index, layer in enumerate(encoder_of(model).layers)
        for name, (path, _) in LOW_RANK_TARGETS.items()
        if getattr(layer.get_submodule(path), "rank", None) is not None
    ]
    if low_rank:
        label = f"{model_name}: " if model_name else ""
        raise AlreadyCompressedError(
            f"{label}already compressed ({len(low_rank)} low-rank linears); compress the dense model it came "
            "from (`lite-whisper inspect` names it), not a compressed one"
        )


def compress(
    model,
    statistics: CalibrationStatistics,
    config: CompressionConfig = CompressionConfig(),
    *,
    model_name: str = "",
    calibration_data: str = "",
    allow_other_weights: bool = False,
):
    """Factorise every target linear whose rank beats break-even; return (lite model, report)."""
    start = time.perf_counter()
    check_dense(model, model_name)
    moments = statistics.derive_output_moments(model, allow_other_weights=allow_other_weights)
    decisions: dict[tuple[int, str], ModuleDecision] = {}
    factors = {}
    for (layer, name), output_moments in moments.items():
        module = _target_module(model, layer, name)
        eigenvalues, eigenvectors = principal_basis(output_moments)
        decision = decide_layer(eigenvalues, module.in_features, config.threshold_for(name), config.rank_multiple)
        decisions[layer, name] = decision
        if decision.rank is not None:
            a, b, bias = low_rank_factors(module.weight, module.bias, output_moments.mean(), eigenvectors[:, : decision.rank])
            factors[layer, name] = (a.to(model.dtype), b.to(model.dtype), bias.to(model.dtype))
    lite = to_lite_whisper(model, factors)
    report = CompressionReport(
        model=model_name or str(getattr(model.config, "_name_or_path", "")),
        threshold=config.label,
        attention_threshold=config.attention_threshold,
        mlp_threshold=config.mlp_threshold,
        rank_multiple=config.rank_multiple,
        calibration_data=calibration_data,
        calibration_clips=statistics.calibration_clips,
        calibration_frames=statistics.calibration_frames,
        exclude_padding=statistics.exclude_padding,
        encoder_params_before=encoder_params(model),
        encoder_params_after=encoder_params(lite),
        encoder_flops_before=encoder_flops(model),
        encoder_flops_after=encoder_flops(lite),
        layers=[
            {name: ModuleReport.of(decisions[layer, name]) for name in LOW_RANK_TARGETS}
            for layer in range(len(encoder_of(model).layers))
        ],
        reduced_attention_layers=reduced_attention_layers(lite),
        wall_seconds=time.perf_counter() - start,
        peak_rss_mb=peak_rss_mb(),
        config=config.to_dict(),
        lite_whisper_version=__version__,
    )
    return lite, report


def _target_module(model, layer: int, name: str) -> torch.nn.Module:
    return encoder_of(model).layers[layer].get_submodule(LOW_RANK_TARGETS[name][0])


