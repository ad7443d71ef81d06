"""LiteASR compression: choose ranks from calibration statistics, factorise, build the lite model.

    statistics = calibrate(model, processor, "calibration.txt")
    lite, report = compress(model, statistics, CompressionConfig.parse("0.99:0.999"))

Each step is separate so that one calibration serves many compressions (`sweep`).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable

import torch

from lite_whisper import __version__
from lite_whisper.calibration.statistics import SOURCES, CalibrationStatistics
from lite_whisper.compression.allocation import BudgetError, Option, allocate
from lite_whisper.compression.config import MASSIVE_GAP, MAX_MASSIVE, CompressionConfig
from lite_whisper.compression.decomposition import (
    ModuleDecision,
    decide_layer,
    explained_variance,
    low_rank_factors,
    massive_directions,
    principal_basis,
    principal_basis_through,
)
from lite_whisper.compression.report import CompressionReport, ModuleReport
from lite_whisper.compression.sensitivity import discarded_variance, measure_sensitivities
from lite_whisper.lowrank.convert import to_lite_whisper
from lite_whisper.lowrank.cost import (
    break_even_rank,
    breaks_even,
    encoder_flops,
    encoder_of,
    encoder_params,
    is_low_rank,
    linear_cost,
    reduced_attention_layers,
)
from lite_whisper.lowrank.targets import LOW_RANK_TARGETS
from lite_whisper.memory import peak_rss_mb

# Below this many calibration clips the measured WER rises, most on speech unlike the calibration
# set (tiny.en, docs/RESULTS.md §6: 32 clips vs 167 on extra/ clips, 9.08 vs 8.00 at 75%).
RECOMMENDED_CLIPS = 64


class AlreadyCompressedError(ValueError):
    """The model given to compress already has low-rank linears."""


def check_dense(model, model_name: str = "") -> None:
    """Raise AlreadyCompressedError when `model`'s encoder already has low-rank linears."""
    low_rank = [
        f"{index}.{name}"
        for index, layer in enumerate(encoder_of(model).layers)
        for name, (path, _) in LOW_RANK_TARGETS.items()
        if is_low_rank(layer.get_submodule(path))
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
    probe_features: torch.Tensor | None = None,
    log: Callable[[str], None] = lambda message: None,
):
    """Factorise the encoder's linears as `config` says; return (lite model, report).

    Thresholds: each linear gets the rank its rule picks, or stays dense below break-even.
    A budget (`config.target_params` / `target_flops`): ranks are allocated across all linears by
    estimated damage; the estimate is measured on `probe_features` (a few calibration clips'
    log-mel features, see `sensitivity`) when given, else it is the discarded share of each
    linear's output variance (blind to where errors show; a warning says so).
    """
    start = time.perf_counter()
    requested = config
    check_dense(model, model_name)
    statistics.check_compatible(model, allow_other_weights=allow_other_weights)
    if statistics.calibration_clips < RECOMMENDED_CLIPS:
        warnings.warn(f"statistics from only {statistics.calibration_clips} calibration clips: with fewer than "
                      f"{RECOMMENDED_CLIPS} the compressed model was measured to lose accuracy, most on speech "
                      "unlike the calibration set; give 100 or more clips if you can", stacklevel=2)
    decisions: dict[tuple[int, str], ModuleDecision] = {}
    factors = {}
    budget = None
    if config.budget is None:
        for key, mean, eigenvalues, eigenvectors in _bases(model, statistics):  # one at a time, then freed
            module = _target_module(model, *key)
            decisions[key] = _decide(config, key[1], eigenvalues, module)
            if decisions[key].rank is not None:
                factors[key] = _factors(model, module, mean, eigenvectors, decisions[key].rank)
    else:  # a budget needs every spectrum at once; each is decomposed once, vectors kept up to break-even
        bases = {key: (mean, values, vectors) for key, mean, values, vectors in _bases(model, statistics, truncate=True)}
        if config.rank_rule == "allocate":
            ranks, budget = _allocate(model, bases, config, probe_features, log)
        else:  # the rule, at the one threshold that fits
            config, budget = _threshold_for_budget(model, bases, config)
            ranks = {key: (decision.rank, decision.reason) for key, decision in
                     ((key, _decide(config, key[1], values, _target_module(model, *key)))
                      for key, (_, values, _) in bases.items())}
        for key in list(bases):
            mean, eigenvalues, eigenvectors = bases.pop(key)  # freed as factorised
            module = _target_module(model, *key)
            rank, reason = ranks[key]
            kept = 1.0 if rank is None else float(explained_variance(eigenvalues)[rank - 1])
            decisions[key] = ModuleDecision(rank, kept, module.in_features, module.out_features, reason)
            if rank is not None:
                factors[key] = _factors(model, module, mean, eigenvectors, rank)
    lite = to_lite_whisper(model, factors)
    allocated = config.budget is not None and config.rank_rule == "allocate"
    report = CompressionReport(
        model=model_name or str(getattr(model.config, "_name_or_path", "")),
        threshold=requested.label,
        attention_threshold=None if allocated else config.attention_threshold,
        mlp_threshold=None if allocated else config.mlp_threshold,
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
        config=requested.to_dict(),
        lite_whisper_version=__version__,
        rank_rule=config.rank_rule,
        budget=budget,
        factorisation_seconds=time.perf_counter() - start,
    )
    return lite, report


def _bases(model, statistics: CalibrationStatistics, truncate: bool = False):
    """(key, output mean, eigenvalues, eigenvectors) of every target linear, one at a time.

    A linear measured on its input that widens it (fc1) is decomposed in its input space
    (`principal_basis_through`): its d_out x d_out covariance is never formed. With `truncate`
    only the eigenvectors a factorisation can use (below break-even) are kept, to bound memory
    when all bases must be alive at once.
    """
    for index, layer in enumerate(encoder_of(model).layers):
        for name, (path, _) in LOW_RANK_TARGETS.items():
            linear = layer.get_submodule(path)
            side, hooked = SOURCES[name]
            if side == "input" and linear.out_features > linear.in_features:
                moments = statistics.moments[index, hooked, side]
                eigenvalues, eigenvectors = principal_basis_through(moments, linear.weight)
                mean = moments.affine_mean(linear.weight, linear.bias)
            else:
                moments = statistics.output_moments(index, name, linear.weight, linear.bias)
                eigenvalues, eigenvectors = principal_basis(moments)
                mean = moments.mean()
                del moments
            if truncate:
                keep = math.ceil(break_even_rank(linear.in_features, linear.out_features))
                eigenvectors = eigenvectors[:, :keep].clone()
            yield (index, name), mean, eigenvalues, eigenvectors


def _decide(config: CompressionConfig, name: str, eigenvalues, module) -> ModuleDecision:
    massive = massive_directions(eigenvalues, MASSIVE_GAP, MAX_MASSIVE) if config.rank_rule == "robust" else 0
    return decide_layer(eigenvalues, module.in_features, config.threshold_for(name), config.rank_multiple, massive)


def _threshold_for_budget(model, bases, config: CompressionConfig):
    """The largest single threshold (all six linears) at which `config.rank_rule` fits the budget.

    Bisection on the threshold over the eigenvalues alone (no factorisation); returns the config
    with that threshold and no budget, and the budget's outcome for the report.
    """
    kind, fraction = config.budget
    dense_total = encoder_params(model) if kind == "params" else encoder_flops(model)
    spectra = []
    for key, (_, eigenvalues, _) in bases.items():
        module = _target_module(model, *key)
        spectra.append((key[1], eigenvalues, module, module.bias is not None))

    def size(threshold: float) -> int:
        trial = dataclasses.replace(config, attention_threshold=threshold, mlp_threshold=threshold,
                                    target_params=None, target_flops=None)
        total = dense_total
        for name, eigenvalues, module, has_bias in spectra:
            rank = _decide(trial, name, eigenvalues, module).rank
            if rank is not None:
                total -= (linear_cost(kind, module.in_features, module.out_features, None, has_bias)
                          - linear_cost(kind, module.in_features, module.out_features, rank, has_bias))
        return total

    low, high = 1e-6, 1.0  # size grows with the threshold; size(1.0) is dense
    if size(low) > fraction * dense_total:
        raise BudgetError(f"the {config.rank_rule} rule cannot reach {kind} {fraction:g} at any threshold; "
                          "use rank rule allocate")
    for _ in range(40):
        middle = (low + high) / 2
        if size(middle) <= fraction * dense_total:
            low = middle
        else:
            high = middle
    chosen = dataclasses.replace(config, attention_threshold=low, mlp_threshold=low, target_params=None,
                                 target_flops=None)
    return chosen, {"kind": kind, "target": fraction, "achieved": size(low) / dense_total,
                    "estimate": f"one {config.rank_rule}-rule threshold, {low:.6f}"}


def _factors(model, module, mean, eigenvectors, rank: int):
    a, b, bias = low_rank_factors(module.weight, module.bias, mean, eigenvectors[:, :rank])
    return a.to(model.dtype), b.to(model.dtype), bias.to(model.dtype)


def _allocate(model, bases, config: CompressionConfig, probe_features, log):
    """Ranks for every linear under the budget, and the budget's outcome for the report."""
    kind, fraction = config.budget
    dense_total = encoder_params(model) if kind == "params" else encoder_flops(model)
    if probe_features is not None:
        log(f"measuring the output damage of each of {len(bases)} linears on {probe_features.shape[0]} clips ...")
        sensitivity = measure_sensitivities(
            model, {key: (values, vectors) for key, (_, values, vectors) in bases.items()},
            {key: mean for key, (mean, _, _) in bases.items()}, probe_features, config.rank_multiple)
        estimate = "measured output damage"
    else:
        warnings.warn("no calibration audio for measuring damage: allocating by discarded variance alone",
                      stacklevel=3)
        sensitivity = {key: 1.0 / max(float(values.sum()), 1e-30) for key, (_, values, _) in bases.items()}
        estimate = "discarded variance share"
    options, linear_total = {}, 0
    for key, (_, eigenvalues, _) in bases.items():
        module = _target_module(model, *key)
        d_in, d_out, has_bias = module.in_features, module.out_features, module.bias is not None
        discarded = discarded_variance(eigenvalues)
        choices = [Option(None, linear_cost(kind, d_in, d_out, None, has_bias), 0.0)]
        for rank in range(config.rank_multiple, d_out, config.rank_multiple):
            if breaks_even(rank, d_in, d_out):
                break
            choices.append(Option(rank, linear_cost(kind, d_in, d_out, rank, has_bias),
                                  sensitivity[key] * float(discarded[rank])))
        options[key] = choices
        linear_total += choices[0].size
    fixed = dense_total - linear_total
    chosen = allocate(options, fixed, fraction * dense_total)
    achieved = (fixed + sum(option.size for option in chosen.values())) / dense_total
    ranks = {
        key: (option.rank, f"allocated: {'dense' if option.rank is None else f'rank {option.rank}'} "
                           f"(estimated cost {option.cost:.3g}, {estimate})")
        for key, option in chosen.items()
    }
    log(f"budget {kind} {fraction:g}: allocated {achieved:.4f} of the dense encoder")
    return ranks, {"kind": kind, "target": fraction, "achieved": achieved, "estimate": estimate,
                   "sensitivity": {f"{layer}.{name}": value for (layer, name), value in sensitivity.items()}}


def _target_module(model, layer: int, name: str) -> torch.nn.Module:
    return encoder_of(model).layers[layer].get_submodule(LOW_RANK_TARGETS[name][0])


