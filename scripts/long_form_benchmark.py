"""Long recordings through lite-whisper's long form and faster-whisper's two pipelines: throughput and WER.

Contenders (each loaded once, warmed up on the first 30 s window until two runs agree, then run on every
recording; the contenders take turns recording by recording, A B A B, so a busy machine slows them alike:
`benchmark.harness`; a contender that fails is reported and the others finish):

    ours:SPEC            lite-whisper's VAD long form (windows batched), any model spec or export
    ours-seq:SPEC        lite-whisper with --long-form sequential
    fw-batched:SPEC      faster-whisper's BatchedInferencePipeline (Silero VAD, batched) on SPEC converted to
                         CTranslate2 int8 (a dense model)
    fw-sequential:SPEC   faster-whisper's WhisperModel.transcribe (30 s windows, previous text as prompt)

Every contender decodes greedily with Whisper's temperature fallback and no-speech rule (faster-whisper's
defaults but beam 1), `--threads` cores, `--batch` windows at a time (default 8).
Recordings: `scripts/long_recordings.py`.

    python scripts/long_form_benchmark.py /tmp/long/recordings.tsv --threads 2 -o long.json \\
        ours:runs/tiny.en-lite-export fw-batched:tiny.en fw-sequential:tiny.en
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


from lite_whisper.benchmark.environment import environment
from lite_whisper.benchmark.harness import Contender, run_interleaved
from lite_whisper.data.datasets import load_dataset
from lite_whisper.evaluation.wer import normalize, word_errors
from lite_whisper.transcription.types import WHISPER_TEMPERATURES, DecodingOptions

BATCH = 8


def ours(spec: str, threads: int, long_form: str, batch: int):
    from lite_whisper.api import load_engine
    from lite_whisper.transcription.engine import transcribe_clips

    engine = load_engine(spec, threads=threads)
    options = DecodingOptions(language="en", temperatures=WHISPER_TEMPERATURES, long_form=long_form)
    return lambda audio: next(transcribe_clips(engine, [("x", audio)], batch_size=batch, options=options)).text


def faster_whisper(spec: str, threads: int, batched: bool, scratch: Path, batch: int):
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from lite_whisper.api import load_model
    from lite_whisper.models.ctranslate2.decoder import convert_to_ctranslate2

    model, processor = load_model(spec)
    folder = convert_to_ctranslate2(model, processor, scratch / f"ct2-{abs(hash(spec))}", quantization="int8")
    whisper = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=threads)
    language = "en" if whisper.model.is_multilingual else None
    if batched:
        pipeline = BatchedInferencePipeline(whisper)
        run = lambda audio: pipeline.transcribe(audio, batch_size=batch, beam_size=1, language=language)  # noqa: E731
    else:
        run = lambda audio: whisper.transcribe(audio, beam_size=1, language=language)  # noqa: E731
    return lambda audio: " ".join(segment.text.strip() for segment in run(audio)[0]).strip()


def transcribing(name: str, run) -> Contender:
    """A harness contender from a function of one recording's audio to its text."""
    return Contender(name, lambda items: [run(audio) for _, audio in items])


def contender(text: str, threads: int, scratch: Path, batch: int):
    kind, _, spec = text.partition(":")
    if kind == "ours":
        return ours(spec, threads, "vad", batch)
    if kind == "ours-seq":
        return ours(spec, threads, "sequential", batch)
    if kind in ("fw-batched", "fw-sequential"):
        return faster_whisper(spec, threads, kind == "fw-batched", scratch, batch)
    raise SystemExit(f"unknown contender {text!r}: use ours:, ours-seq:, fw-batched: or fw-sequential:")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recordings", type=Path, help="recordings.tsv from scripts/long_recordings.py")
    parser.add_argument("contenders", nargs="+", help="ours:SPEC, ours-seq:SPEC, fw-batched:SPEC, fw-sequential:SPEC")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, help="first N recordings only")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"windows decoded together (default {BATCH}, "
                        "faster-whisper's BatchedInferencePipeline default)")
    parser.add_argument("-o", "--output", type=Path, help="JSON result")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    recordings = list(load_dataset(args.recordings, limit=args.limit))
    with tempfile.TemporaryDirectory(prefix="long-form-bench-") as scratch:
        contenders = [transcribing(name, contender(name, args.threads, Path(scratch), args.batch))
                      for name in args.contenders]
        warm = [("warm-up", recordings[0].audio[:30 * 16000])]
        timings = run_interleaved(contenders, [(r.id, r.audio) for r in recordings], chunk_size=1, warmup_with=warm,
                                  log=lambda message: print(message, file=sys.stderr, flush=True))
    audio_seconds = sum(len(r.audio) for r in recordings) / 16000
    results = {}
    for timing in timings:
        if timing.failed:
            results[timing.name] = {"failure": timing.failure}
            continue
        errors = [word_errors(normalize(r.reference), normalize(t)) for r, t in zip(recordings, timing.hypotheses)]
        total = sum(errors[1:], errors[0])
        results[timing.name] = {"wer": round(total.wer, 2), "insertions": total.insertions,
                                "deletions": total.deletions, "substitutions": total.substitutions,
                                "seconds": round(timing.wall_seconds, 2),
                                "audio_seconds_per_second": round(audio_seconds / timing.wall_seconds, 1),
                                "per_recording_wer": [round(e.wer, 2) for e in errors]}
    report = {"recordings": len(recordings), "audio_minutes": round(audio_seconds / 60, 1), "threads": args.threads,
              "batch": args.batch, "environment": environment(), "results": results}
    width = max(len(name) for name in results)
    print(f"{'contender':<{width}} {'WER %':>6} {'ins':>5} {'del':>5} {'audio s/s':>9}")
    for name, r in results.items():
        if "failure" in r:
            print(f"{name:<{width}} failed: {r['failure']}")
            continue
        print(f"{name:<{width}} {r['wer']:>6.2f} {r['insertions']:>5} {r['deletions']:>5} "
              f"{r['audio_seconds_per_second']:>9.1f}")
    if args.output:
        args.output.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
