"""Evaluate a Whisper model on a speech dataset: WER two ways, error counts, speed."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lite_whisper.api import as_engine
from lite_whisper.data.datasets import SpeechDataset, load_dataset
from lite_whisper.distributed import SINGLE, Ranks, gather_to_main, max_over_ranks
from lite_whisper.evaluation.loops import is_cut_short, is_loop
from lite_whisper.evaluation.wer import NO_ERRORS, WordErrors, normalize, word_errors
from lite_whisper.files import write_json_atomic
from lite_whisper.progress import ProgressBar
from lite_whisper.transcription.engine import transcribe_clips
from lite_whisper.transcription.types import DecodingOptions


@dataclass(frozen=True)
class UtteranceResult:
    id: str
    reference: str
    hypothesis: str
    wer: float | None  # percent, on normalised text; None for an empty normalised reference
    words: int
    seconds: float
    loop: bool = False  # the hypothesis looks like a repetition loop (`evaluation.loops`)
    cut_short: bool = False  # the hypothesis stops while the reference goes on (`evaluation.loops`)


@dataclass
class EvaluationResult:
    model: str
    data: str
    clips: int
    words: int
    wer: float  # corpus WER, percent: all errors / all reference words (Open ASR Leaderboard)
    mean_utterance_wer: float  # mean of per-utterance WER, percent (the LiteASR paper)
    substitutions: int
    deletions: int
    insertions: int
    audio_seconds: float
    wall_seconds: float
    rtfx: float  # audio seconds per second of processing
    loops: list[str] = field(default_factory=list)  # ids of utterances whose hypothesis loops
    cut_short: list[str] = field(default_factory=list)  # ids of utterances whose hypothesis stops early
    clips_without_reference: list[str] = field(default_factory=list)
    utterances: list[UtteranceResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        write_json_atomic(path, self.to_dict())

    def table(self) -> str:
        rows = [
            ("model", self.model),
            ("data", self.data),
            ("clips", f"{self.clips}" + (f" (+{len(self.clips_without_reference)} without reference, skipped)" if self.clips_without_reference else "")),
            ("reference words", f"{self.words}"),
            ("WER (corpus)", f"{self.wer:.2f} %"),
            ("WER (mean per utterance)", f"{self.mean_utterance_wer:.2f} %"),
            ("substitutions / deletions / insertions", f"{self.substitutions} / {self.deletions} / {self.insertions}"),
            ("looping utterances", _count_and_first(self.loops)),
            ("utterances cut short", _count_and_first(self.cut_short)),
            ("audio", f"{self.audio_seconds:.1f} s"),
            ("wall time", f"{self.wall_seconds:.1f} s"),
            ("RTFx", f"{self.rtfx:.1f}"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _count_and_first(ids: list[str], shown: int = 3) -> str:
    """'2 (a, b)' or '5 (a, b, c, ...)': how many, and the first few ids."""
    if not ids:
        return "0"
    return f"{len(ids)} ({', '.join(ids[:shown])}{', ...' if len(ids) > shown else ''})"


def evaluate(
    model,
    dataset: SpeechDataset | str | Path,
    processor=None,
    *,
    limit: int | None = None,
    batch_size: int = 8,
    options: DecodingOptions | None = None,
    progress: bool = True,
    ranks: Ranks = SINGLE,
    label: str = "",
) -> EvaluationResult | None:
    """Transcribe every clip that has a reference and score it against that reference.

    `model` is a spec, a `(model, processor)` pair, a model with `processor`, or an engine. English is
    assumed unless `options` say otherwise. Under torch.distributed
    (`ranks`) each rank transcribes every world_size-th clip; rank 0 gathers the rows and returns
    the result, in dataset order with the single-process totals; the other ranks return None.
    Wall time is then that of the slowest rank. `label` names the progress bar ("evaluating LABEL").
    Text is normalised as English when translating or when the language is English or not given,
    else with Whisper's basic normaliser.
    """
    engine = as_engine(model, processor)
    model_name = str(model) if isinstance(model, (str, Path)) else engine.name
    if not isinstance(dataset, SpeechDataset):
        dataset = load_dataset(dataset, limit=limit)
    elif limit is not None:
        dataset = dataset.with_limit(limit)
    spec = dataset.spec
    if ranks.distributed:
        dataset = dataset.sharded(ranks.rank, ranks.world_size)
    options = options or DecodingOptions(language="en")
    text_language = "en" if options.task == "translate" else options.language  # what the references are in

    without_reference: list[tuple[int, str]] = []  # (position in the dataset, clip id)
    references: dict[str, tuple[int, str]] = {}

    def clips_with_reference():
        for local, clip in enumerate(dataset):
            position = dataset.shard_index + local * dataset.shard_count
            if clip.reference is None:
                without_reference.append((position, clip.id))
                continue
            references[clip.id] = (position, clip.reference)
            yield clip.id, clip.audio

    rows: list[tuple[int, UtteranceResult, WordErrors]] = []
    totals = NO_ERRORS
    bar = ProgressBar(total=dataset.size, desc=f"evaluating {label}" if label else "evaluating", unit="clip",
                      disable=not progress or not ranks.main)
    start = time.perf_counter()
    for result in transcribe_clips(engine, clips_with_reference(), batch_size=batch_size, options=options):
        position, reference = references.pop(result.source)
        hypothesis = normalize(result.text, text_language)
        errors = word_errors(normalize(reference, text_language), hypothesis)
        totals = totals + errors
        rows.append((position, UtteranceResult(result.source, reference, result.text, errors.wer,
                                               errors.reference_words, result.seconds,
                                               is_loop(errors.reference_words, hypothesis),
                                               is_cut_short(errors)), errors))
        bar.update(1)
        bar.set_postfix(wer=f"{100.0 * totals.errors / max(totals.reference_words, 1):.2f}%")
    wall = max_over_ranks(time.perf_counter() - start, ranks)
    bar.close()
    gathered = gather_to_main((rows, without_reference), ranks)  # [(rows, without) of each rank]
    if gathered is None:
        return None
    rows = sorted((row for part, _ in gathered for row in part), key=lambda row: row[0])
    without_reference = [clip for _, clip in sorted(entry for _, part in gathered for entry in part)]
    if not rows:
        raise ValueError(f"{spec}: no clip has a reference transcript, so WER cannot be computed")

    totals = sum((errors for _, _, errors in rows), NO_ERRORS)
    utterances = [utterance for _, utterance, _ in rows]
    scored = [u.wer for u in utterances if u.wer is not None]
    audio_seconds = sum(u.seconds for u in utterances)
    return EvaluationResult(
        model=model_name,
        data=spec,
        clips=len(utterances),
        words=totals.reference_words,
        wer=100.0 * totals.errors / max(totals.reference_words, 1),
        mean_utterance_wer=sum(scored) / len(scored) if scored else 0.0,
        substitutions=totals.substitutions,
        deletions=totals.deletions,
        insertions=totals.insertions,
        audio_seconds=audio_seconds,
        wall_seconds=wall,
        rtfx=audio_seconds / wall if wall > 0 else float("inf"),
        loops=[u.id for u in utterances if u.loop],
        cut_short=[u.id for u in utterances if u.cut_short],
        clips_without_reference=without_reference,
        utterances=utterances,
    )
