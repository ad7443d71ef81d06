"""A measured Pareto frontier: one calibration, many thresholds, WER and speed of each.

Layout of a sweep folder (every file is written atomically, so an interrupted sweep
resumes where it stopped: finished steps are read back, missing ones are done):

    sweep.json                   the settings the results depend on (model, data, limits, decoding,
                                 a digest of the statistics): a resumed run with other settings
                                 is refused, or with `restart` starts afresh
    statistics.safetensors       calibration moments, computed once
    dense/eval.json              the uncompressed model on the evaluation data
    dense/bench.json
    t0.99_0.999/model/           the compressed model (a lite-whisper folder)
    t0.99_0.999/eval.json
    t0.99_0.999/bench.json       encoder latency, interleaved with the dense model
    pareto.json, pareto.png, ranks.png
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from lite_whisper.api import load_model
from lite_whisper.benchmark.bench import benchmark
from lite_whisper.compression.config import CompressionConfig
from lite_whisper.compression.distill import DistillConfig
from lite_whisper.compression.pipeline import compress_and_save, load_or_calibrate
from lite_whisper.compression.report import REPORT_FILE, CompressionReport
from lite_whisper.data.augment import Augmentation
from lite_whisper.data.datasets import load_dataset
from lite_whisper.distributed import SINGLE, Ranks, on_main
from lite_whisper.evaluation.evaluate import evaluate
from lite_whisper.experiments.plots import plot_pareto, plot_ranks
from lite_whisper.files import output_lock, write_json_atomic
from lite_whisper.lowrank.cost import encoder_flops, encoder_params
from lite_whisper.transcription.types import DecodingOptions

STATISTICS_FILE = "statistics.safetensors"
MANIFEST_FILE = "sweep.json"
DENSE = "dense"
MANIFEST_VERSION = 1
ABSENT_MEANS = {"augment": 0}  # sweep.json settings written only when not their default, and that default


class SweepMismatchError(ValueError):
    """A sweep folder holds results made with other settings."""


@dataclass(frozen=True)
class SweepPoint:
    label: str  # "dense" or the threshold, e.g. "0.99:0.999"
    encoder_params: int
    encoder_flops: int
    wer: float  # corpus WER, percent
    mean_utterance_wer: float  # percent
    latency_ms: float | None  # median encoder latency, 30 s input, batch 1
    speedup: float | None  # dense latency (stock transformers) / this latency, measured in the same run
    speedup_same_kernels: float | None = None  # dense on the same kernels / this: what the compression buys
    pareto_params: bool = False  # no other point has both fewer parameters and lower WER
    pareto_latency: bool = False
    wer_by_data: dict[str, float] | None = None  # corpus WER on each further dataset (sweep's extra --data)
    loops_by_data: dict[str, int] | None = None  # looping utterances on each further dataset


def slug(label: str) -> str:
    return DENSE if label == DENSE else "t" + label.replace(":", "_")


METHODS = {"paper": "paper", "robust": "robust", "allocate": "allocate", "budget": "allocate", "distill": "allocate"}
DISTILLED = ("distill",)  # methods whose factors are trained after allocation
DEFAULT_DISTILL_STEPS = 128


@dataclass(frozen=True)
class Setting:
    """One point of a sweep: how ranks are chosen and whether the factors are trained afterwards."""

    config: CompressionConfig
    distillation: DistillConfig = DistillConfig()

    @property
    def label(self) -> str:
        return self.config.label if not self.distillation.steps else \
            "distill" + self.config.label.removeprefix(self.config.rank_rule)


def parse_thresholds(thresholds: list[str], heatmap: str | None = None, targets: list[float] | None = None,
                     methods: list[str] | None = None, kind: str = "params",
                     distill_steps: int = DEFAULT_DISTILL_STEPS) -> dict[str, Setting]:
    """Label -> setting for every threshold (the paper's rule) and every (method, target) pair.

    ValueError for a bad threshold, target or method, for nothing to sweep, or a heatmap not among them.
    """
    configs = {setting.label: setting for setting in
               (Setting(CompressionConfig.parse(t, rank_rule="paper")) for t in thresholds if t.strip())}
    for method in methods or []:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if targets and not methods:
        raise ValueError("--targets needs --methods (e.g. paper,robust,allocate)")
    for target in targets or []:
        for method in methods or []:
            budget = {"target_params": target} if kind == "params" else {"target_flops": target}
            config = CompressionConfig.parse("1", rank_rule=METHODS[method], **budget)
            setting = Setting(config, DistillConfig(steps=distill_steps) if method in DISTILLED else DistillConfig())
            configs[setting.label] = setting
    if not configs:
        raise ValueError("give at least one threshold, or --targets with --methods")
    if heatmap is not None and heatmap not in configs and CompressionConfig.parse(heatmap, rank_rule="paper").label not in configs:
        raise ValueError(f"--heatmap {heatmap} is not one of the swept settings {', '.join(configs)}")
    return configs


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
    restart: bool = False,
    targets: list[float] | None = None,
    methods: list[str] | None = None,
    distill_steps: int = DEFAULT_DISTILL_STEPS,
    extra_data: Sequence[tuple[str, str]] = (),
    augment: int = 0,
    log=print,
    ranks: Ranks = SINGLE,
) -> list[SweepPoint] | None:
    """Run (or resume) a sweep and write pareto.json, pareto.png and ranks.png to `out_dir`.

    Resuming needs the same settings as the run that made the folder (see `sweep.json`):
    otherwise SweepMismatchError, or with `restart=True` the old results are discarded.
    Under torch.distributed (`ranks`) calibration and every evaluation are sharded over the
    ranks; rank 0 alone compresses, writes and times, and returns the points (the others None).
    The ranks must share `out_dir` (one machine, or a shared filesystem). `extra_data`: (label, spec)
    of further datasets every point is also evaluated on (WER and loops per dataset; the frontier
    stays the one on `data`). `augment`: degraded copies of every calibration clip (`Augmentation`), seen by
    the statistics, the damage probes and distillation.
    """
    configs = parse_thresholds(thresholds, heatmap, targets, methods, distill_steps=distill_steps)
    out_dir = Path(out_dir)
    options = options or DecodingOptions(language="en")
    settings = {"version": MANIFEST_VERSION, "model": model_spec, "calibration": calibration, "limit": limit,
                "batch_size": batch_size, "data": data, "eval_limit": eval_limit, "decoding": _decoding_settings(options)}
    if any(method in DISTILLED for method in methods or []):  # (absent otherwise: older sweep folders resume)
        settings["distill_steps"] = distill_steps
    if extra_data:
        settings["extra_data"] = [list(pair) for pair in extra_data]
    if augment:  # (absent without: older sweep folders resume)
        settings["augment"] = augment
    calibration_set = load_dataset(calibration, limit=limit)  # statistics, damage probes, distillation
    if augment:
        calibration_set = calibration_set.augmented(Augmentation(copies=augment))
    if not ranks.main:
        log = lambda message: None  # noqa: E731
    with output_lock(out_dir) if ranks.main else contextlib.nullcontext():
        on_main(ranks, _claim_folder, out_dir, settings, restart, log)
        dense, processor = load_model(model_spec)
        loaded = load_or_calibrate(dense, processor, calibration_set, stats_files=[out_dir / STATISTICS_FILE],
                                   batch_size=batch_size, progress=progress, model_name=model_spec,
                                   log=log, ranks=ranks)
        on_main(ranks, _check_statistics, out_dir, settings, loaded.statistics.digest())

        measure = dict(data=data, extra_data=extra_data, eval_limit=eval_limit, batch_size=batch_size, options=options, bench=bench,
                       repeats=repeats, progress=progress, log=log, ranks=ranks)
        points = [_measure(DENSE, (dense, processor), None, out_dir / DENSE, **measure)]
        for label, setting in configs.items():
            folder = out_dir / slug(label) / "model"

            def compress_once(folder=folder, label=label, setting=setting):
                if not folder.exists():
                    log(f"compressing at {label} ...")
                    compress_and_save(dense, processor, loaded, setting.config, folder, model_name=model_spec,
                                      calibration=calibration_set,
                                      distillation=setting.distillation,
                                      progress=progress, log=log)

            on_main(ranks, compress_once)
            compressed = load_model(folder)
            points.append(_measure(label, compressed, dense, out_dir / slug(label), **measure))
            del compressed
        if not ranks.main:
            return None

        points = mark_pareto(points)
        write_json_atomic(out_dir / "pareto.json", {
            "model": model_spec, "calibration": calibration, "data": data,
            "calibration_clips": loaded.statistics.calibration_clips,
            "points": [asdict(point) for point in points],
        })

        title = f"{model_spec}: WER vs encoder size" + (" and latency" if bench else "")
        plot_pareto(points, out_dir / "pareto.png", title=title)
        chosen = (heatmap if heatmap in configs else CompressionConfig.parse(heatmap, rank_rule="paper").label) if heatmap \
            else next(iter(configs))
        report = CompressionReport.load(out_dir / slug(chosen) / "model" / REPORT_FILE)
        plot_ranks(report, out_dir / "ranks.png", title=f"{model_spec} at threshold {chosen}: rank per layer and module")
    return points


FALLBACK_FIELDS = ("temperatures", "compression_ratio_threshold", "best_of", "temperature", "seed")


def _decoding_settings(options: DecodingOptions) -> dict:
    """The decoding options as sweep.json stores them (JSON values); without the fallback's fields while it is
    off, so sweep folders made before it existed resume."""
    settings = json.loads(json.dumps(asdict(options)))
    if not options.fallback:
        settings = {key: value for key, value in settings.items() if key not in FALLBACK_FIELDS}
    return settings


def _claim_folder(out_dir: Path, settings: dict, restart: bool, log) -> None:
    """Make `out_dir` a sweep folder for `settings`: new, resumed with the same settings, or restarted."""
    manifest_file = out_dir / MANIFEST_FILE
    if out_dir.exists() and any(out_dir.iterdir()):
        if not manifest_file.exists() and not restart:
            raise SweepMismatchError(
                f"{out_dir}: not empty and has no {MANIFEST_FILE} (not a sweep folder, or made by an older "
                "lite-whisper); choose another folder or pass --restart to clear it"
            )
        if manifest_file.exists():
            stored = json.loads(manifest_file.read_text())
            then, now = ({**ABSENT_MEANS, **values} for values in (stored, settings))
            changed = sorted(key for key in settings.keys() | ABSENT_MEANS.keys() if then.get(key) != now.get(key))
            if changed and not restart:
                detail = "; ".join(f"{key}: {then.get(key)!r} then, {now.get(key)!r} now" for key in changed)
                raise SweepMismatchError(
                    f"{out_dir}: made with other settings ({detail}); its results would be stale. Use the same "
                    "settings to resume, another folder, or --restart to discard them"
                )
            if not changed:
                log(f"resuming the sweep in {out_dir}")
                return
        log(f"--restart: clearing {out_dir}")
        for entry in out_dir.iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(manifest_file, settings)


def _check_statistics(out_dir: Path, settings: dict, digest: str) -> None:
    """Record the statistics digest on first use; refuse results made with other statistics."""
    manifest_file = out_dir / MANIFEST_FILE
    stored = json.loads(manifest_file.read_text())
    if stored.get("statistics_digest") is None:
        write_json_atomic(manifest_file, {**stored, "statistics_digest": digest})
    elif stored["statistics_digest"] != digest:
        raise SweepMismatchError(
            f"{out_dir / STATISTICS_FILE} is not the statistics its results were made with (digest {digest}, "
            f"expected {stored['statistics_digest']}); pass --restart to redo the sweep"
        )


def _measure(label, pair, dense, folder: Path, *, data, eval_limit, batch_size, options, bench, repeats, progress,
             log, ranks: Ranks = SINGLE, extra_data: Sequence[tuple[str, str]] = ()):
    """Evaluate (and benchmark) one point, reusing results already on disk; None on ranks other than 0."""
    model = pair[0]
    eval_file = folder / "eval.json"

    def evaluated_before(target: Path) -> bool:  # rank 0 makes the folder and tells every rank whether to evaluate
        folder.mkdir(parents=True, exist_ok=True)
        return target.exists()

    def evaluate_once(spec: str, target: Path, what: str) -> None:
        if not on_main(ranks, evaluated_before, target):
            log(f"evaluating {label} on {what} ...")
            result = evaluate(pair, spec, limit=eval_limit, batch_size=batch_size, options=options, progress=progress,
                              label=label, ranks=ranks)
            if ranks.main:
                write_json_atomic(target, result.to_dict())

    evaluate_once(data, eval_file, data)
    for extra_label, spec in extra_data:
        evaluate_once(spec, folder / f"eval-{_file_slug(extra_label)}.json", extra_label)
    if not ranks.main:
        return None
    evaluation = json.loads(eval_file.read_text())
    extras = {extra_label: json.loads((folder / f"eval-{_file_slug(extra_label)}.json").read_text())
              for extra_label, _ in extra_data}

    latency = speedup = None
    bench_file = folder / "bench.json"
    if bench and dense is not None and not bench_file.exists():

        log(f"timing the encoder of {label} against the dense model ...")
        write_json_atomic(bench_file, benchmark(model, baseline=dense, batch_sizes=(1,), repeats=repeats).to_dict())
    same_kernels = None
    if bench_file.exists():
        timing = json.loads(bench_file.read_text())["results"][0]
        latency = timing["model_ms"]["median"]
        speedup, same_kernels = timing["speedup"]["median"], timing["same_kernels_speedup"]["median"]
    return SweepPoint(label, encoder_params(model), encoder_flops(model), evaluation["wer"],
                      evaluation["mean_utterance_wer"], latency, speedup, same_kernels,
                      wer_by_data={name: result["wer"] for name, result in extras.items()} if extras else None,
                      loops_by_data={name: len(result.get("loops", [])) for name, result in extras.items()}
                      if extras else None)


def _file_slug(label: str) -> str:
    """A file-name-safe form of a dataset label (a variant name, or a path)."""
    return "".join(character if character.isalnum() or character in "-." else "_" for character in label).strip("_")


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
