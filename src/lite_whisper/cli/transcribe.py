"""`lite-whisper transcribe`: audio files to text (or JSON) with any model lite-whisper loads."""

from __future__ import annotations

import json
from pathlib import Path

from lite_whisper.cli.common import (
    MODEL_HELP,
    CLIError,
    add_decoding_options,
    add_model_options,
    check_device,
    decoding_options,
    default_dtype,
    positive,
)


def add_parser(commands) -> None:
    p = commands.add_parser(
        "transcribe", help="transcribe audio files",
        description="Transcribe audio files (any length, any sample rate) with a Whisper model. Silence and "
        "non-speech give an empty transcript.",
        epilog="example: lite-whisper transcribe tiny.en a.flac b.wav --json",
    )
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("files", nargs="+", type=Path, help="audio files (wav, flac, ogg, mp3)")
    add_decoding_options(p, language_default=None, fallback_default=True)
    p.add_argument("--timestamps", action="store_true", help="print segments with start/end times")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_model_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from lite_whisper.api import load_engine, transcribe

    positive(args.batch_size, "--batch-size")
    options = decoding_options(args)
    check_device(args.device)
    for path in args.files:  # fail before loading the model
        if not path.exists():
            raise CLIError(f"{path}: audio file not found")
        if path.is_dir():
            raise CLIError(f"{path}: is a folder, not an audio file")
    engine = load_engine(args.model, dtype=args.dtype or default_dtype(args.device), device=args.device,
                         encoder=args.encoder, decoder=args.decoder)
    results = transcribe(engine, args.files, batch_size=args.batch_size, options=options)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return 0
    for result in results:
        if len(results) > 1:
            print(f"== {result.source}")
        if args.timestamps and result.segments:
            for segment in result.segments:
                print(f"[{segment.start:7.2f} -> {segment.end:7.2f}] {segment.text}")
        else:
            print(result.text)
    return 0
