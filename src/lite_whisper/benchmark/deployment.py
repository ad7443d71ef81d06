"""An exported model against faster-whisper on the same clips, in one process, same decoding.

Contenders (greedy, no timestamps, temperature 0, no previous-text conditioning):
  faster-whisper            int8 CTranslate2 of the dense source model, `transcribe()` clip by clip
                            (as its users call it; VAD off)
  faster-whisper batched    the same model through `BatchedInferencePipeline` (VAD on, as it requires)
  lite-whisper export       the exported folder (its encoder on ONNX Runtime or OpenVINO, see
                            `deploy.encoders`; CTranslate2 decoder), clips batched `batch_size` at a time
  lite-whisper export b1    the same, one clip at a time (what batching adds, apart)

They take turns batch by batch after a warm-up (`harness.run_interleaved`), timing features, encoder
and decoding (audio is decoded beforehand for all alike); one that fails is reported and the others
go on. RTFx = audio seconds / wall seconds; WER with the project's normaliser. Encoder-only latency: CTranslate2's `encode()` of the dense int8 model against every
encoder of the export this machine runs (ONNX Runtime float32 and int8, OpenVINO bfloat16), 30 s
input, batch 1, interleaved, medians.
"""

from __future__ import annotations

import statistics as stats
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ctranslate2
import numpy as np
import torch

from lite_whisper.benchmark.encoder_timing import time_interleaved
from lite_whisper.benchmark.environment import environment
from lite_whisper.benchmark.harness import Contender, Timing, run_interleaved
from lite_whisper.data.audio import SAMPLE_RATE
from lite_whisper.models.ctranslate2.decoder import convert_to_ctranslate2
from lite_whisper.evaluation.wer import corpus_errors
from lite_whisper.runtime.encoders import open_encoder, runnable_encoders
from lite_whisper.runtime.exported import ExportedWhisper
from lite_whisper.runtime.faster_whisper_engine import FasterWhisperPipelines
from lite_whisper.transcription.engine import transcribe_clips
from lite_whisper.transcription.types import DecodingOptions


@dataclass
class ContenderResult:
    name: str
    rtfx: float | None
    wall_seconds: float
    wer: float | None
    errors: int
    words: int
    hypotheses: list[str] = field(default_factory=list)
    failure: str = ""  # what stopped it (then rtfx and WER are None)


@dataclass
class DeploymentBench:
    export: str
    dense: str
    data: str
    clips: int
    audio_seconds: float
    threads: int | None
    batch_size: int
    encoder: str  # the export's encoder that transcribed (float32, int8, bfloat16)
    contenders: list[ContenderResult]
    encoder_ms: dict[str, dict[str, float]]  # engine -> {"median", "min", "max"} at batch 1, 30 s
    environment: dict

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        base = self.contenders[0]
        lines = [f"{self.clips} clips, {self.audio_seconds:.0f} s of audio, {self.threads or 'default'} threads, "
                 f"greedy; export {self.export} ({self.encoder} encoder), dense {self.dense}",
                 f"{'contender':<26} {'RTFx':>7} {'vs fw':>6} {'WER %':>7}"]
        for result in self.contenders:
            if result.failure:
                lines.append(f"{result.name:<26} failed: {result.failure}")
            else:
                ratio = f"{result.rtfx / base.rtfx:6.2f}" if base.rtfx else f"{'-':>6}"  # no ratio to a failed base
                lines.append(f"{result.name:<26} {result.rtfx:7.1f} {ratio} {result.wer:7.2f}")
        lines.append("encoder, batch 1, 30 s (median ms): " + ", ".join(
            f"{name} {timing['median']:.0f}" for name, timing in self.encoder_ms.items()))
        return "\n".join(lines)


def _score(timing: Timing, references: list[str], audio_seconds: float) -> ContenderResult:
    if timing.failed:
        return ContenderResult(timing.name, None, timing.wall_seconds, None, 0, 0, timing.hypotheses, timing.failure)
    totals = corpus_errors(references, timing.hypotheses)
    return ContenderResult(timing.name, audio_seconds / timing.wall_seconds, timing.wall_seconds,
                           100.0 * totals.errors / max(totals.reference_words, 1), totals.errors,
                           totals.reference_words, timing.hypotheses)


def bench_deployment(export_folder: str | Path, dense_model, processor, dataset, *, dense_name: str = "",
                     batch_size: int = 8, threads: int | None = None, repeats: int = 10, encoder: str = "auto",
                     log=lambda m: None) -> DeploymentBench:
    """Run every contender over `dataset` (clips with references) and time the encoders.

    `encoder`: the export's encoder that transcribes ('auto', 'float32', 'int8', 'bfloat16').
    """


    clips = [(clip.id, clip.audio, clip.reference) for clip in dataset if clip.reference is not None]
    if not clips:
        raise ValueError(f"{dataset.spec}: no clip has a reference transcript")
    references = [reference for _, _, reference in clips]
    audio_seconds = sum(len(audio) for _, audio, _ in clips) / SAMPLE_RATE
    language = "en"  # the dev split is English; English-only and multilingual models alike
    with tempfile.TemporaryDirectory(prefix="lite-whisper-fw-") as scratch:
        log("converting the dense model to CTranslate2 int8 (faster-whisper's format) ...")
        fw_folder = convert_to_ctranslate2(dense_model, processor, Path(scratch) / "ct2", quantization="int8")
        fw = FasterWhisperPipelines(fw_folder, options=DecodingOptions(language=language), threads=threads)
        ours = ExportedWhisper(export_folder, encoder=encoder, threads=threads)
        ours_options = DecodingOptions(language=language)

        def faster_whisper_run(items):
            return [text for text, _ in fw.sequential([audio for _, audio in items])]

        def batched_run(items):
            return [text for text, _ in fw.batched_vad([audio for _, audio in items], batch_size)]

        def ours_run(items, size):
            return [t.text for t in transcribe_clips(ours, items, batch_size=size, options=ours_options)]

        runs = [Contender("faster-whisper int8", faster_whisper_run),
                Contender(f"faster-whisper batched b{batch_size}", batched_run),
                Contender(f"lite-whisper export b{batch_size}", lambda items: ours_run(items, batch_size)),
                Contender("lite-whisper export b1", lambda items: ours_run(items, 1))]
        log(f"transcribing {len(clips)} clips with {', '.join(run.name for run in runs)}, taking turns ...")
        timings = run_interleaved(runs, [(name, audio) for name, audio, _ in clips], chunk_size=batch_size, log=log)
        contenders = [_score(timing, references, audio_seconds) for timing in timings]

        log("timing the encoders alone ...")
        features = processor.feature_extractor(clips[0][1], sampling_rate=SAMPLE_RATE,
                                               return_tensors="np").input_features.astype(np.float32)
        states = ctranslate2.StorageView.from_array(np.ascontiguousarray(features))
        engines = {"ctranslate2 int8 (dense)": lambda: fw.model.model.encode(states, to_cpu=True)}
        for kind, engine in runnable_encoders(ours.manifest).items():
            run_encoder = open_encoder(export_folder, ours.manifest, kind, threads=threads)
            engines[f"{engine} {kind} (export)"] = lambda run_encoder=run_encoder: run_encoder(features)
        passes = time_interleaved([lambda _, run=run: run() for run in engines.values()], torch.from_numpy(features),
                                  repeats, warmup=1)
        samples = dict(zip(engines, passes))
    encoder_ms = {name: {"median": stats.median(values), "min": min(values), "max": max(values)}
                  for name, values in samples.items()}
    return DeploymentBench(str(export_folder), dense_name, dataset.spec, len(clips), audio_seconds, threads,
                           batch_size, ours.encoder_kind, contenders, encoder_ms, environment())
