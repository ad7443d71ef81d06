"""Beyond the paper's rule: the robust rank rule, budget allocation and measured damage (tiny random models)."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_processor, tiny_whisper_model, write_calibration_clips

from lite_whisper.calibration.calibrate import calibrate
from lite_whisper.compression.allocation import BudgetError, Option, allocate
from lite_whisper.compression.compress import compress
from lite_whisper.compression.config import CompressionConfig
from lite_whisper.compression.decomposition import massive_directions, rank_for_threshold
from lite_whisper.compression.sensitivity import discarded_variance, probe_rank
from lite_whisper.data.datasets import load_dataset
from lite_whisper.data.features import first_clips_features
from lite_whisper.lowrank.cost import linear_cost


def spectrum_with_outlier() -> torch.Tensor:
    """tiny.en's last fc2 in miniature: one direction 400x the next, then a slowly decaying rest."""
    rest = torch.linspace(20.0, 1.0, 127, dtype=torch.float64)
    return torch.cat([torch.tensor([8000.0], dtype=torch.float64), rest])


def test_massive_directions_known_answers():
    assert massive_directions(spectrum_with_outlier()) == 1
    assert massive_directions(torch.tensor([50.0, 40.0, 3.0, 2.0, 1.0])) == 2  # the gap after the second
    assert massive_directions(torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])) == 0
    assert massive_directions(torch.tensor([9.0, 1.0, 0.5, 0.4])) == 0  # 9x is not a gap of 10
    assert massive_directions(torch.tensor([9.0, 1.0, 0.0, 0.0])) == 2  # everything after is zero
    assert massive_directions(torch.tensor([0.0, 0.0, 0.0])) == 0


def test_robust_rule_keeps_the_outlier_and_more_rank_than_the_paper():
    eigenvalues = spectrum_with_outlier()
    # the paper's rule: the outlier alone "explains" 8000 / 9333.5 = 85.7%; 0.9 is passed at rank 32
    assert rank_for_threshold(eigenvalues, 0.9) == 32
    # robust: 0.9 of the other 127 directions (1333.5 in all) needs the outlier + 91 -> 96 in multiples of 16
    total_rest = float(eigenvalues[1:].sum())
    needed = next(k for k in range(1, 128) if float(eigenvalues[1:1 + k].sum()) / total_rest > 0.9)
    expected = -(-(1 + needed) // 16) * 16
    assert rank_for_threshold(eigenvalues, 0.9, massive=1) == expected == 96


def test_allocation_prefers_the_cheapest_damage_and_meets_the_budget():
    # two linears of equal size; truncating "b" costs ten times less per unit saved
    def options(scale):
        return [Option(None, 100, 0.0)] + [Option(r, r * 2, scale * (100 - 2 * r)) for r in (10, 20, 30, 40)]

    chosen = allocate({"a": options(10.0), "b": options(1.0)}, fixed=0, budget=140)
    assert chosen["a"].rank is None  # only the cheap one is cut: b to rank 10, then the slack buys rank 20 back
    assert chosen["b"].rank == 20 and sum(o.size for o in chosen.values()) == 140
    with pytest.raises(BudgetError, match="smallest rank"):
        allocate({"a": options(1.0)}, fixed=50, budget=60)


def test_allocation_spends_slack_back():
    # budget 150 with a jump option: greedy goes dense -> rank 10 (size 20); slack 130 - 80 buys rank 30 back
    opts = {"a": [Option(None, 100, 0.0), Option(10, 20, 5.0), Option(30, 60, 1.0)], "b": [Option(None, 80, 0.0)]}
    chosen = allocate(opts, fixed=0, budget=150)
    assert chosen["a"].rank == 30 and sum(o.size for o in chosen.values()) == 140


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """Calibrated once for the module: compress leaves the model and the statistics as they were."""
    calibration_folder = write_calibration_clips(tmp_path_factory.mktemp("allocation") / "calibration")
    model, processor = tiny_whisper_model(vocab_size=51864), tiny_processor()
    statistics = calibrate(model, processor, calibration_folder, progress=False)
    probe = first_clips_features(load_dataset(calibration_folder), processor, 2)
    return model, statistics, probe


@pytest.mark.parametrize("kind, target", [("params", 0.8), ("params", 0.6), ("flops", 0.92)])
def test_budget_is_met_and_within_one_rank_step(calibrated, kind, target):
    model, statistics, probe = calibrated
    config = CompressionConfig.parse("1", target_params=target) if kind == "params" else \
        CompressionConfig.parse("1", target_flops=target)
    lite, report = compress(model, statistics, config, probe_features=probe)
    before, after = ((report.encoder_params_before, report.encoder_params_after) if kind == "params"
                     else (report.encoder_flops_before, report.encoder_flops_after))
    assert after <= target * before  # never exceeded
    # within one rank step: the largest single step (16 more rank on the widest linear, 64 + 256 wide) would not fit
    step = linear_cost(kind, 64, 256, 32, True) - linear_cost(kind, 64, 256, 16, True)
    assert after > target * before - step
    if kind == "params":
        assert report.budget["achieved"] == pytest.approx(after / before)
    else:  # linears counted as dense-path FLOPs; reduced attention can only make the model cheaper
        assert report.budget["achieved"] >= after / before - 1e-12
    assert report.rank_rule == "allocate" and report.budget["estimate"] == "measured output damage"
    assert all(v >= 0 for v in report.budget["sensitivity"].values())


def test_budget_without_audio_falls_back_to_variance_with_a_warning(calibrated):
    model, statistics, _ = calibrated
    with pytest.warns(UserWarning, match="discarded variance alone"):
        _, report = compress(model, statistics, CompressionConfig.parse("1", target_params=0.8))
    assert report.budget["estimate"] == "discarded variance share"
    assert report.encoder_params_after <= 0.8 * report.encoder_params_before


def test_measured_damage_matches_a_manual_truncation_and_restores_the_model(calibrated):
    from lite_whisper.compression.compress import _bases, _factors
    from lite_whisper.compression.sensitivity import measure_sensitivities
    from lite_whisper.lowrank.modeling_lite_whisper import LowRankLinear

    model, statistics, probe = calibrated
    encoder = model.model.encoder
    with torch.inference_mode():
        before = encoder(probe).last_hidden_state.clone()
    bases = {key: (m, v, e) for key, m, v, e in _bases(model, statistics)}
    sensitivity = measure_sensitivities(model, {k: (v, e) for k, (_, v, e) in bases.items()},
                                        {k: m for k, (m, _, _) in bases.items()}, probe)
    with torch.inference_mode():
        assert torch.equal(encoder(probe).last_hidden_state, before)  # every linear put back
    # layer 1 fc1 by hand: truncate at the probe rank, measure the relative squared error at the output
    mean, values, vectors = bases[1, "fc1"]
    rank = probe_rank(64, 256, 16)
    dense = encoder.layers[1].fc1
    encoder.layers[1].fc1 = LowRankLinear.from_factors(*_factors(model, dense, mean, vectors, rank))
    with torch.inference_mode():
        after = encoder(probe).last_hidden_state
    encoder.layers[1].fc1 = dense
    error = float((after.double() - before.double()).square().sum() / before.double().square().sum())
    assert sensitivity[1, "fc1"] * float(discarded_variance(values)[rank]) == pytest.approx(error, rel=1e-4)
    # the probes run only from the truncated layer on, from inputs recorded once: the same output from any layer
    from lite_whisper.compression.sensitivity import record_layer_inputs, run_from

    inputs, output = record_layer_inputs(encoder, probe)
    assert len(inputs) == 2 and torch.equal(output, before)
    for first in (0, 1):
        assert torch.allclose(run_from(encoder, first, inputs[first]), before, atol=1e-6)
    assert probe_rank(64, 64, 16) == 16 and probe_rank(384, 1536, 16) == 144  # half of 307.2, in 16s
    assert discarded_variance(torch.tensor([3.0, 2.0, 1.0])).tolist() == [6.0, 3.0, 1.0, 0.0]


def test_robust_rule_through_compress(calibrated):
    model, statistics, _ = calibrated
    _, paper = compress(model, statistics, CompressionConfig.parse("0.6", rank_rule="paper"))
    _, robust = compress(model, statistics, CompressionConfig.parse("0.6", rank_rule="robust"))
    paper_ranks = [e.rank or 10**6 for layer in paper.layers for e in layer.values()]
    robust_ranks = [e.rank or 10**6 for layer in robust.layers for e in layer.values()]
    assert all(r >= p for r, p in zip(robust_ranks, paper_ranks))  # never less rank than the paper's rule
    assert robust.rank_rule == "robust" and robust.threshold == "robust-0.6"


@pytest.mark.parametrize("rule", ["paper", "robust"])
def test_a_rule_at_a_budget_searches_one_threshold(calibrated, rule):
    model, statistics, _ = calibrated
    _, report = compress(model, statistics, CompressionConfig.parse("1", rank_rule=rule, target_params=0.7))
    assert report.encoder_params_after <= 0.7 * report.encoder_params_before
    assert report.attention_threshold == report.mlp_threshold < 1.0 and report.rank_rule == rule
    assert report.budget["achieved"] == pytest.approx(report.encoder_params_after / report.encoder_params_before)
    assert report.threshold == f"{rule}-params0.7" and report.config["target_params"] == 0.7
    # a slightly higher threshold would not fit (the search lands on the edge)
    assert report.attention_threshold + 1e-3 < 1.0
    _, above = compress(model, statistics, CompressionConfig.parse(str(report.attention_threshold + 1e-3),
                                                                   rank_rule=rule))
    assert above.encoder_params_after > 0.7 * report.encoder_params_before
