"""The whole compression job, as the CLI and `sweep` run it: load or calibrate, compress, save, report."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from lite_whisper.calibration.calibrate import calibrate
from lite_whisper.calibration.statistics import CalibrationStatistics
from lite_whisper.compression.compress import compress
from lite_whisper.compression.config import CompressionConfig
from lite_whisper.compression.distill import DistillConfig, distill
from lite_whisper.models.model_card import CARD_FILE, model_card
from lite_whisper.compression.report import REPORT_FILE, CompressionReport
from lite_whisper.data.datasets import SpeechDataset, load_dataset
from lite_whisper.data.features import first_clips_features
from lite_whisper.distributed import SINGLE, Ranks
from lite_whisper.lowrank.checkpoint import save_lite_whisper
from lite_whisper.progress import ProgressBar


@dataclasses.dataclass(frozen=True)
class LoadedStatistics:
    statistics: CalibrationStatistics
    source: str  # the calibration data spec, or the statistics files read
    seconds: float  # time spent calibrating or reading


def load_or_calibrate(
    model,
    processor,
    calibration: SpeechDataset | str | None,
    *,
    stats_files: Sequence[Path] = (),
    limit: int | None = None,
    batch_size: int = 8,
    exclude_padding: bool = False,
    progress: bool = True,
    model_name: str = "",
    log: Callable[[str], None] = lambda message: None,
    ranks: Ranks = SINGLE,
    compute_dtype: torch.dtype | None = None,
    products: str = "float32",
) -> LoadedStatistics:
    """Statistics from `stats_files` (all existing: merged) or, if there are none yet, by calibrating.

    With one statistics file that does not exist, calibration runs and its result is written
    there (atomically) for the next run. `calibration` may be None when the files exist.
    Under torch.distributed (`ranks`) calibration is sharded and summed (see `calibrate`) and
    rank 0 alone writes the file.
    """
    start = time.perf_counter()
    existing = [Path(path) for path in stats_files if Path(path).exists()]
    if existing:
        statistics = CalibrationStatistics.load(existing[0])
        for path in existing[1:]:
            statistics = statistics.merge(CalibrationStatistics.load(path))
        source = ", ".join(str(path) for path in existing)
        log(f"loaded statistics of {statistics.calibration_clips} clips from {source}")
        return LoadedStatistics(statistics, source, time.perf_counter() - start)
    if calibration is None:
        raise ValueError("no statistics files to load and no calibration data to compute them from")
    log(f"calibrating {model_name or 'the model'} on "
        f"{calibration.description if isinstance(calibration, SpeechDataset) else calibration}")
    statistics = calibrate(model, processor, calibration, limit=limit, batch_size=batch_size,
                           exclude_padding=exclude_padding, progress=progress, model_name=model_name, ranks=ranks,
                           compute_dtype=compute_dtype, products=products)
    if stats_files and ranks.main:
        statistics.save(stats_files[0])
        log(f"wrote statistics to {stats_files[0]}")
    source = calibration.spec if isinstance(calibration, SpeechDataset) else str(calibration)
    if isinstance(calibration, SpeechDataset) and calibration.augmentation is not None:
        source += f" {calibration.augmentation.description}"
    return LoadedStatistics(statistics, source, time.perf_counter() - start)


def compress_and_save(
    model,
    processor,
    loaded: LoadedStatistics,
    config: CompressionConfig,
    output: str | Path,
    *,
    model_name: str = "",
    dtype: torch.dtype = torch.float16,
    overwrite: bool = False,
    allow_other_weights: bool = False,
    started: float | None = None,
    calibration: SpeechDataset | str | None = None,
    probe_clips: int = 4,
    distillation: DistillConfig = DistillConfig(),
    progress: bool = True,
    log: Callable[[str], None] = lambda message: None,
) -> CompressionReport:
    """Compress `model` with `loaded` statistics, save the lite-whisper folder with its report, return the report.

    `started` (a `time.perf_counter()` value): the report's wall time counts from then, so it
    covers loading and calibration too; by default it covers the factorisation alone. With a
    budget, the first `probe_clips` clips of `calibration` serve to measure each linear's damage;
    with `distillation.steps`, the first `distillation.clips` of them train the factors afterwards.
    """
    probe = features = None
    if calibration is not None and (config.budget is not None or distillation.steps):

        dataset = calibration if isinstance(calibration, SpeechDataset) else load_dataset(calibration)
        parameter = next(model.parameters())
        clips = max(probe_clips, distillation.clips)
        features = first_clips_features(dataset, processor, clips, parameter.device, parameter.dtype)
        probe = None if features is None else features[:probe_clips]
    if distillation.steps and features is None:
        raise ValueError("distillation needs calibration audio (give --calibration), and none of it was readable")
    lite, report = compress(model, loaded.statistics, config, model_name=model_name, calibration_data=loaded.source,
                            allow_other_weights=allow_other_weights,
                            probe_features=probe if config.budget is not None else None, log=log)
    if distillation.steps:
        report = dataclasses.replace(report, distillation=_distill(lite, model, features, distillation, progress, log))
    if started is not None:
        report = dataclasses.replace(report, wall_seconds=time.perf_counter() - started)
    report = dataclasses.replace(report, calibration_seconds=loaded.seconds)
    card = model_card(lite, source=model_name or str(model.config._name_or_path), folder=output,
                      report=report.to_dict())
    save_lite_whisper(lite, processor, output, dtype=dtype, overwrite=overwrite,
                      extra_files={REPORT_FILE: json.dumps(report.to_dict(), indent=2) + "\n", CARD_FILE: card},
                      compression=report.config)
    return report


def _distill(lite, model, features, distillation: DistillConfig, progress: bool, log) -> dict:
    """Train the factors with a progress bar showing the loss; the report's distillation entry."""


    bar = ProgressBar(total=distillation.steps, desc="distilling", unit="step", disable=not progress)

    def advance(step: int, steps: int, loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4g}")

    try:
        report = distill(lite, model, features, distillation, progress=advance, log=log)
    finally:
        bar.close()
    return report.to_dict()
