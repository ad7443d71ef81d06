"""A measured Pareto frontier: one calibration, many thresholds, WER and speed of each.

Layout of a sweep folder (every file is written atomically, so an interrupted sweep
resumes where it stopped: finished steps are read back, missing ones are done):

    statistics.safetensors       calibration moments, computed once
    dense/eval.json              the uncompressed model on the evaluation data
    dense/bench.json
    t0.99_0.999/model/           the compressed model (a lite-whisper folder)
    t0.99_0.999/eval.json
    t0.99_0.999/bench.json       encoder latency, interleaved with the dense model
    pareto.json, pareto.png, ranks.png
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from lite_whisper.compression.compress import CompressionConfig, calibrate, compress
from lite_whisper.compression.report import REPORT_FILE, CompressionReport
from lite_whisper.compression.statistics import CalibrationStatistics
from lite_whisper.evaluation.cost import encoder_flops, encoder_params
from lite_whisper.evaluation.evaluate import evaluate
from lite_whisper.files import write_json_atomic
from lite_whisper.inference.transcribe import DecodingOptions
from lite_whisper.lowrank.checkpoint import save_lite_whisper
from lite_whisper.models.loading import load_model

STATISTICS_FILE = "statistics.safetensors"
DENSE = "dense"


@dataclass(frozen=True)
class SweepPoint:
    label: str  # "dense" or the threshold, e.g. "0.99:0.999"
    encoder_params: int
    encoder_flops: int
    wer: float  # corpus WER, percent
    mean_utterance_wer: float  # percent
    latency_ms: float | None  # median encoder latency, 30 s input, batch 1
    speedup: float | None  # dense latency / this latency, measured in the same run
    pareto_params: bool = False  # no other point has both fewer parameters and lower WER
    pareto_latency: bool = False


def slug(label: str) -> str:
    return DENSE if label == DENSE else "t" + label.replace(":", "_")


def sweep(
    model_spec: str,
    calibration: str,
    data: str,
    thresholds: list[str],
    out_dir: str | Path,
    *,
    limit: int | None = None,
    eval_limit: int | None = None,
    batch_size: int = 8,
    bench: bool = True,
    repeats: int = 5,
    heatmap: str | None = None,
    options: DecodingOptions | None = None,
    progress: bool = True,
    log=print,
) -> list[SweepPoint]:
    """Run (or resume) a sweep and write pareto.json, pareto.png and ranks.png to `out_dir`."""
    configs = {config.label: config for config in (CompressionConfig.parse(t) for t in thresholds)}
    if not configs:
        raise ValueError("give at least one threshold")
    if heatmap is not None and CompressionConfig.parse(heatmap).label not in configs:
        raise ValueError(f"--heatmap {heatmap} is not one of the swept thresholds {', '.join(configs)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dense, processor = load_model(model_spec)

    statistics_file = out_dir / STATISTICS_FILE
    if statistics_file.exists():
        statistics = CalibrationStatistics.load(statistics_file)
        log(f"reusing calibration statistics ({statistics.calibration_clips} clips) from {statistics_file}")
    else:
        log(f"calibrating on {calibration} ...")
        statistics = calibrate(dense, processor, calibration, limit=limit, batch_size=batch_size,
                               progress=progress, model_name=model_spec)
        statistics.save(statistics_file)

    options = options or DecodingOptions(language="en")
    points = [_measure(DENSE, (dense, processor), None, out_dir / DENSE, data, eval_limit, batch_size,
                       options, bench, repeats, progress, log)]
    for label, config in configs.items():
        folder = out_dir / slug(label) / "model"
        if not folder.exists():
            log(f"compressing at threshold {label} ...")
            lite, report = compress(dense, statistics, config, model_name=model_spec, calibration_data=calibration)
            save_lite_whisper(lite, processor, folder, extra_files={REPORT_FILE: json.dumps(report.to_dict(), indent=2)})
            del lite
        compressed = load_model(folder)
        points.append(_measure(label, compressed, dense, out_dir / slug(label), data, eval_limit, batch_size,
                               options, bench, repeats, progress, log))
        del compressed

    points = mark_pareto(points)
    write_json_atomic(out_dir / "pareto.json", {
        "model": model_spec, "calibration": calibration, "data": data,
        "calibration_clips": statistics.calibration_clips,
        "points": [asdict(point) for point in points],
    })
    from lite_whisper.benchmark.plots import plot_pareto, plot_ranks

    plot_pareto(points, out_dir / "pareto.png", title=f"{model_spec}: WER vs encoder size and latency")
    chosen = CompressionConfig.parse(heatmap).label if heatmap else next(iter(configs))
    report = CompressionReport.load(out_dir / slug(chosen) / "model" / REPORT_FILE)
    plot_ranks(report, out_dir / "ranks.png", title=f"{model_spec} at threshold {chosen}: rank per layer and module")
    return points


def _measure(label, pair, dense, folder: Path, data, eval_limit, batch_size, options, bench, repeats, progress, log):
    """Evaluate (and benchmark) one point, reusing results already on disk."""
    folder.mkdir(parents=True, exist_ok=True)
    model = pair[0]
    eval_file = folder / "eval.json"
    if not eval_file.exists():
        log(f"evaluating {label} on {data} ...")
        result = evaluate(pair, data, limit=eval_limit, batch_size=batch_size, options=options, progress=progress)
        write_json_atomic(eval_file, result.to_dict())
    evaluation = json.loads(eval_file.read_text())

    latency = speedup = None
    bench_file = folder / "bench.json"
    if bench and dense is not None and not bench_file.exists():
        from lite_whisper.benchmark.bench import benchmark

        log(f"timing the encoder of {label} against the dense model ...")
        write_json_atomic(bench_file, benchmark(model, baseline=dense, batch_sizes=(1,), repeats=repeats).to_dict())
    if bench_file.exists():
        timing = json.loads(bench_file.read_text())["results"][0]
        latency, speedup = timing["model_ms"]["median"], timing["speedup"]
    return SweepPoint(label, encoder_params(model), encoder_flops(model), evaluation["wer"],
                      evaluation["mean_utterance_wer"], latency, speedup)


def mark_pareto(points: list[SweepPoint]) -> list[SweepPoint]:
    """Flag the points no other point beats on both WER and cost (parameters; latency)."""
    dense = next((p for p in points if p.label == DENSE), None)
    if dense is not None and dense.latency_ms is None:  # dense latency = the baseline of the compressed runs
        ratios = [p.latency_ms * p.speedup for p in points if p.latency_ms is not None and p.speedup]
        if ratios:
            dense = SweepPoint(**{**asdict(dense), "latency_ms": sorted(ratios)[len(ratios) // 2], "speedup": 1.0})
            points = [dense if p.label == DENSE else p for p in points]

    def optimal(point: SweepPoint, cost: str) -> bool:
        value = getattr(point, cost)
        if value is None:
            return False
        return not any(
            getattr(other, cost) is not None
            and getattr(other, cost) <= value and other.wer <= point.wer
            and (getattr(other, cost) < value or other.wer < point.wer)
            for other in points
        )

    return [
        SweepPoint(**{**asdict(p), "pareto_params": optimal(p, "encoder_params"), "pareto_latency": optimal(p, "latency_ms")})
        for p in points
    ]
