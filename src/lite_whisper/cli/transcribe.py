"""`lite-whisper transcribe`: audio files, folders or lists of them to text, JSON or subtitle files."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from lite_whisper.cli.common import (
    MODEL_HELP,
    CLIError,
    add_decoding_options,
    add_model_options,
    backend_of,
    check_device,
    decoding_options,
    default_dtype,
    positive,
)

OUTPUT_FORMATS = ("txt", "srt", "vtt", "tsv", "json")

EXAMPLES = """examples:
  lite-whisper transcribe tiny.en a.flac b.m4a
  lite-whisper transcribe runs/tiny.en-lite meeting.mp4 --timestamps
  lite-whisper transcribe runs/tiny.en-lite-export talks/ --output-format srt --output-dir subtitles/
  lite-whisper transcribe base podcast.webm --output-format all --output-dir out/ --word-timestamps
  torchrun --nproc-per-node 4 --no-python lite-whisper transcribe base archive.txt --output-format json --output-dir out/
"""


def add_parser(commands) -> None:
    p = commands.add_parser(
        "transcribe", help="transcribe audio files",
        description="Transcribe audio (any length, any sample rate, any container FFmpeg reads: wav, flac, mp3, "
        "m4a, mp4, webm, ...) with a Whisper model. Recordings over 30 s are cut at their pauses (Silero VAD) "
        "and their windows decoded as batches. Silence and non-speech give an empty transcript.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("inputs", nargs="+", type=Path, metavar="AUDIO",
                   help="audio files, folders (every audio file below them) or .txt lists of audio paths")
    add_decoding_options(p, language_default=None, fallback_default=True)
    p.add_argument("--timestamps", action="store_true", help="print segments with start/end times")
    p.add_argument("--word-timestamps", action="store_true",
                   help="time every word (cross-attention alignment heads + dynamic time warping, as openai-whisper "
                   "and faster-whisper do); printed, and in --json and the json file")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--output-format", choices=[*OUTPUT_FORMATS, "all"],
                   help="write one file per input in this format (all: every one) into --output-dir, as "
                   "openai-whisper does; srt, vtt, tsv and json carry timestamps")
    p.add_argument("--output-dir", type=Path, help="where --output-format's files go (default: the current folder)")
    p.add_argument("--overwrite", action="store_true", help="replace output files that exist already")
    add_model_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from lite_whisper.api import load_engine
    from lite_whisper.distributed import from_environment
    from lite_whisper.transcription.engine import transcribe_clips

    positive(args.batch_size, "--batch-size")
    positive(args.threads, "--threads")
    if args.output_dir is not None and args.output_format is None:
        raise CLIError("--output-dir needs --output-format (txt, srt, vtt, tsv, json or all)")
    formats = OUTPUT_FORMATS if args.output_format == "all" else (args.output_format,) if args.output_format else ()
    if any(fmt != "txt" for fmt in formats):
        args.timestamps = True  # subtitles and tables need segment times
    if args.word_timestamps:
        args.timestamps = True
    options = dataclasses.replace(decoding_options(args), word_timestamps=args.word_timestamps)
    check_device(args.device)
    inputs = expand_inputs(args.inputs)
    ranks = from_environment()  # under torchrun: rank r of n transcribes every n-th file
    if ranks.distributed and not formats:
        raise CLIError("under torchrun each process writes its own files: give --output-format and --output-dir")
    inputs = inputs[ranks.rank::ranks.world_size]
    outputs = plan_outputs(inputs, formats, args.output_dir or Path("."), args.overwrite)
    engine = load_engine(args.model, backend_of(args), dtype=args.dtype or default_dtype(args.device),
                         device=args.device, encoder=args.encoder, threads=args.threads)
    results = transcribe_clips(engine, inputs, batch_size=args.batch_size, options=options)
    if formats:
        write_outputs(results, outputs, task=options.task, language=options.language)
        return 0
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return 0
    for result in results:
        if len(inputs) > 1:
            print(f"== {result.source}")
        if args.word_timestamps and result.words:
            for word in result.words:
                print(f"[{word.start:7.2f} -> {word.end:7.2f}] {word.word.strip()}")
        elif args.timestamps and result.segments:
            for segment in result.segments:
                print(f"[{segment.start:7.2f} -> {segment.end:7.2f}] {segment.text}")
        else:
            print(result.text)
    return 0


def expand_inputs(paths: list[Path]) -> list[tuple[str, Path]]:
    """(name, audio path) of every input: files as they are, folders and lists through `load_dataset` (names are
    paths below the folder, without the extension); checked before any model loads."""
    from lite_whisper.data.datasets import LIST_SUFFIXES, DatasetError, load_dataset

    inputs = []
    for path in paths:
        if not path.exists():
            raise CLIError(f"{path}: audio file not found")
        if path.is_dir() or path.suffix.lower() in LIST_SUFFIXES:
            try:
                dataset = load_dataset(path)
            except DatasetError as error:
                raise CLIError(str(error)) from None
            inputs.extend(dataset.files())
        else:
            inputs.append((path.stem, path))
    return inputs


def plan_outputs(inputs: list[tuple[str, Path]], formats: tuple[str, ...], folder: Path,
                 overwrite: bool) -> list[dict[str, Path]]:
    """Each input's output file per format (`folder`/NAME.FORMAT); two inputs writing one file, or a file that
    exists without --overwrite, are errors before any work."""
    if folder.exists() and not folder.is_dir():
        raise CLIError(f"--output-dir {folder} is a file, not a folder")
    planned: list[dict[str, Path]] = []
    owners: dict[Path, Path] = {}
    for name, audio in inputs:
        files = {fmt: folder / f"{name}.{fmt}" for fmt in formats}
        for target in files.values():
            if target in owners:
                raise CLIError(f"{owners[target]} and {audio} would both write {target}; transcribe them into "
                               "different --output-dir folders")
            owners[target] = audio
            if target.exists() and not overwrite:
                raise CLIError(f"{target} exists; pass --overwrite to replace it, or choose another --output-dir")
        planned.append(files)
    return planned


def write_outputs(results, outputs: list[dict[str, Path]], *, task: str, language: str | None) -> None:
    """Write every result's files as it comes (each atomically: a stopped run leaves whole files only)."""
    from lite_whisper.files import atomic_file
    from lite_whisper.transcription.formats import FILE_FORMATS, render

    for result, files in zip(results, outputs):
        for fmt, target in files.items():
            body, _ = render(result, FILE_FORMATS[fmt], task=task, language=language)
            with atomic_file(target) as temporary:
                temporary.write_text(body if body.endswith("\n") else body + "\n", encoding="utf-8")
            print(f"wrote {target}", file=sys.stderr)
