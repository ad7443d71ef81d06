"""Sweep on a tiny random model: outputs, Pareto flags, plots, and resuming after an interruption."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from conftest import tiny_english_model, tiny_processor

import lite_whisper.compression.pipeline as pipeline_module
import lite_whisper.experiments.sweep as sweep_module
from lite_whisper.experiments.sweep import SweepPoint, mark_pareto, sweep
from lite_whisper.models.loading import save_model
from lite_whisper.transcription.types import DecodingOptions


def make_setup(folder):
    model_dir = save_model(tiny_english_model(), tiny_processor(), folder / "dense")
    audio = folder / "audio"
    audio.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        sf.write(audio / f"c{index}.wav", 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
    (audio / "transcripts.tsv").write_text("file\ttext\n" + "".join(f"c{i}.wav\thello world {i}\n" for i in range(3)))
    return str(model_dir), str(audio), folder / "sweep"


@pytest.fixture
def setup(tmp_path):
    return make_setup(tmp_path)


def _run(setup, **kwargs):
    model, audio, out = setup
    # Random models babble until max length: a few tokens are enough to exercise the plumbing.
    settings = dict(eval_limit=2, bench=False, progress=False, options=DecodingOptions(max_new_tokens=4),
                    log=lambda message: None)
    return sweep(model, audio, audio, ["0.6", "0.5:0.7"], out, **(settings | kwargs))


@pytest.fixture(scope="module")
def timed_sweep(tmp_path_factory):
    """One sweep with timing, shared by the tests that only read what it wrote. Its clock is the encoder's
    FLOPs (1 ms per GFLOP), so every speedup it records has a known answer: the FLOP ratio."""
    from lite_whisper.benchmark import encoder_timing
    from lite_whisper.lowrank.cost import encoder_flops as flops_of

    setup = make_setup(tmp_path_factory.mktemp("timed"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(encoder_timing, "time_encoder", lambda encoder, features: flops_of(encoder) / 1e9)
        points = _run(setup, bench=True, repeats=2)
    return setup, points


def test_sweep_writes_json_and_plots(timed_sweep):
    (model, audio, out), points = timed_sweep
    assert [p.label for p in points] == ["dense", "0.6", "0.5:0.7"]
    data = json.loads((out / "pareto.json").read_text())
    assert [p["label"] for p in data["points"]] == ["dense", "0.6", "0.5:0.7"]
    assert data["points"][0]["encoder_params"] > data["points"][1]["encoder_params"]
    for name in ("pareto.png", "ranks.png", "statistics.safetensors", "t0.6/model/config.json", "t0.5_0.7/eval.json"):
        assert (out / name).exists(), name
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_with_timing_records_both_speedups(timed_sweep):
    (model, audio, out), points = timed_sweep
    dense = points[0]
    assert dense.latency_ms == pytest.approx(dense.encoder_flops / 1e9)  # from the compressed points' baselines
    for point in points[1:]:
        assert point.latency_ms == pytest.approx(point.encoder_flops / 1e9)
        assert point.speedup == pytest.approx(dense.encoder_flops / point.encoder_flops)
        # the same-kernel baseline is the same dense encoder: the same FLOPs, so the same answer
        assert point.speedup_same_kernels == pytest.approx(dense.encoder_flops / point.encoder_flops)
    assert points[1].speedup != pytest.approx(points[2].speedup)  # each point its own measurement


def test_sweep_resumes_after_interruption(setup, monkeypatch):
    real_evaluate = sweep_module.evaluate
    calls = []

    def evaluate_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # die while evaluating the first compressed model
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "evaluate", evaluate_then_die)
    with pytest.raises(KeyboardInterrupt):
        _run(setup)
    out = setup[2]
    assert (out / "dense" / "eval.json").exists() and not (out / "t0.6" / "eval.json").exists()
    assert not list(out.rglob("*.partial"))  # nothing half-written

    calibrations = []
    real_calibrate = pipeline_module.calibrate
    monkeypatch.setattr(pipeline_module, "calibrate", lambda *a, **k: calibrations.append(1) or real_calibrate(*a, **k))
    evaluated = []
    monkeypatch.setattr(sweep_module, "evaluate", lambda *a, **k: evaluated.append(1) or real_evaluate(*a, **k))
    points = _run(setup)
    assert calibrations == []  # statistics reused
    assert len(evaluated) == 2  # only the two compressed models, not the dense one again
    assert len(points) == 3 and (out / "pareto.json").exists()


def test_pareto_flags():
    def point(label, params, wer, latency):
        return SweepPoint(label, params, 0, wer, wer, latency, None)

    points = mark_pareto([point("dense", 100, 5.0, 10.0), point("a", 80, 6.0, 12.0), point("b", 90, 7.0, 8.0),
                          point("c", 85, 5.5, 9.0)])
    flags = {p.label: (p.pareto_params, p.pareto_latency) for p in points}
    assert flags == {"dense": (True, True), "a": (True, False), "b": (False, True), "c": (True, True)}


def test_sweep_rejects_bad_heatmap(setup):
    with pytest.raises(ValueError, match="not one of the swept settings"):
        _run(setup, heatmap="0.9")


@pytest.mark.parametrize("command", [["eval", "tiny.en", "--data", "nowhere"], ["transcribe", "tiny.en", "x.wav"],
                                     ["sweep", "tiny.en", "--thresholds", "0.9", "-o", "nowhere"]])
def test_max_new_tokens_must_be_positive(command, capsys):
    from lite_whisper.cli import main

    assert main([*command, "--max-new-tokens", "0"]) == 2
    assert "--max-new-tokens must be at least 1, got 0" in capsys.readouterr().err


def test_max_new_tokens_reaches_generate():
    from lite_whisper.cli import build_parser
    from lite_whisper.cli.common import decoding_options as _decoding_options
    from lite_whisper.runtime.pytorch import generate_kwargs

    args = build_parser().parse_args(["eval", "tiny.en", "--max-new-tokens", "7"])
    options = _decoding_options(args)
    assert options.max_new_tokens == 7
    assert generate_kwargs(tiny_english_model(), options)["max_new_tokens"] == 7


def test_sweep_refuses_stale_results_and_restarts_on_request(timed_sweep, tmp_path):
    (model, audio, shared), _ = timed_sweep
    out = tmp_path / "sweep"
    shutil.copytree(shared, out)  # a finished sweep (the shared one stays as it was)
    setup = (model, audio, out)
    with pytest.raises(sweep_module.SweepMismatchError, match="eval_limit: 2 then, 1 now"):
        sweep(model, audio, audio, ["0.6"], out, eval_limit=1, bench=False, progress=False,
              options=DecodingOptions(max_new_tokens=4), log=lambda message: None)
    with pytest.raises(sweep_module.SweepMismatchError, match="decoding"):
        sweep(model, audio, audio, ["0.6"], out, eval_limit=2, bench=False, progress=False,
              options=DecodingOptions(max_new_tokens=5), log=lambda message: None)
    # made without degraded copies (sweep.json has no "augment"): asking for them is another sweep
    with pytest.raises(sweep_module.SweepMismatchError, match="augment: 0 then, 1 now"):
        sweep(model, audio, audio, ["0.6"], out, eval_limit=2, bench=False, progress=False, augment=1,
              options=DecodingOptions(max_new_tokens=4), log=lambda message: None)
    # statistics replaced behind the sweep's back are caught by their digest
    import lite_whisper.calibration.statistics as statistics_module

    stats = statistics_module.CalibrationStatistics.load(out / "statistics.safetensors")
    stats.calibration_clips += 1
    stats.save(out / "statistics.safetensors")
    with pytest.raises(sweep_module.SweepMismatchError, match="not the statistics"):
        _run(setup)
    points = sweep(model, audio, audio, ["0.6"], out, eval_limit=1, bench=False, progress=False, restart=True,
                   options=DecodingOptions(max_new_tokens=4), log=lambda message: None)
    assert [p.label for p in points] == ["dense", "0.6"]
    assert json.loads((out / "sweep.json").read_text())["eval_limit"] == 1
    assert not (out / "t0.5_0.7").exists()  # the old results are gone


def test_sweep_refuses_a_folder_that_is_not_a_sweep(setup):
    model, audio, out = setup
    out.mkdir()
    (out / "thesis.tex").write_text("mine")
    with pytest.raises(sweep_module.SweepMismatchError, match="not empty"):
        _run(setup)
    assert (out / "thesis.tex").read_text() == "mine"


def test_sweep_by_method_and_target_with_distillation(setup):
    points = _run(setup, targets=[0.8], methods=["paper", "robust", "budget", "distill"], distill_steps=2)
    labels = [p.label for p in points]
    assert labels == ["dense", "0.6", "0.5:0.7", "paper-params0.8", "robust-params0.8", "allocate-params0.8",
                      "distill-params0.8"]
    dense = points[0].encoder_params
    for point in points[3:]:
        assert point.encoder_params <= 0.8 * dense
    out = setup[2]
    report = json.loads((out / "tdistill-params0.8" / "model" / "compression_report.json").read_text())
    assert report["distillation"]["steps"] == 2 and report["rank_rule"] == "allocate"
    assert report["distillation"]["train_clips"] == 3  # all three clips (a quarter of 3 rounds to none held out)
    assert json.loads((out / "tallocate-params0.8" / "model" / "compression_report.json").read_text())["distillation"] is None
    assert json.loads((out / "sweep.json").read_text())["distill_steps"] == 2
    # same ranks, different factors: the distilled model's encoder params equal allocate's
    assert points[-1].encoder_params == points[-2].encoder_params


def test_sweep_methods_are_parsed():
    with pytest.raises(ValueError, match="unknown method"):
        sweep_module.parse_thresholds([], targets=[0.8], methods=["magic"])
    settings = sweep_module.parse_thresholds([], targets=[0.8], methods=["allocate", "distill"], distill_steps=7)
    assert {label: s.distillation.steps for label, s in settings.items()} == {"allocate-params0.8": 0,
                                                                              "distill-params0.8": 7}
    with pytest.raises(ValueError, match="needs --methods"):
        sweep_module.parse_thresholds([], targets=[0.8])


def test_point_methods_for_the_plot():
    from lite_whisper.experiments.plots import point_method

    assert [point_method(label) for label in ("dense", "0.99:0.999", "0.95", "paper-params0.75", "robust-0.99",
                                              "allocate-params0.6", "distill-flops0.8")] == \
        ["dense", "paper", "paper", "paper", "robust", "allocate", "distill"]


def test_sweep_distills_on_the_limited_calibration_set(setup):
    points = _run(setup, limit=2, targets=[0.8], methods=["distill"], distill_steps=1)
    report = json.loads((setup[2] / "tdistill-params0.8" / "model" / "compression_report.json").read_text())
    assert report["calibration_clips"] == 2 and report["distillation"]["train_clips"] == 2
    assert points[-1].label == "distill-params0.8"


def test_sweep_evaluates_every_point_on_further_datasets(setup, tmp_path, capsys):
    from lite_whisper.cli import main
    from lite_whisper.data.augment import parse_variants
    from lite_whisper.data.datasets import load_dataset
    from lite_whisper.data.variants import build_variants

    model, audio, out = setup
    build_variants(load_dataset(audio), parse_variants("telephone,white-5db"), tmp_path / "variants", progress=False)
    assert main(["sweep", model, "--thresholds", "0.6", "--calibration", audio, "--data", audio,
                 "--data", str(tmp_path / "variants"), "--eval-limit", "2", "--no-bench", "--max-new-tokens", "4",
                 "--no-progress", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "WER % on the further datasets" in printed and "worst ratio" in printed
    points = json.loads((out / "pareto.json").read_text())["points"]
    assert [sorted(point["wer_by_data"]) for point in points] == [["telephone", "white-5db"]] * 2
    assert (out / "t0.6" / "eval-telephone.json").exists()
    assert json.loads((out / "sweep.json").read_text())["extra_data"][0][0] == "telephone"
