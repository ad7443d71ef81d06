"""`lite-whisper convert`: any model lite-whisper loads, written as a standard Hugging Face folder."""

from __future__ import annotations

from pathlib import Path

from lite_whisper.cli.common import DTYPES, MODEL_HELP, CLIError


def add_parser(commands) -> None:
    p = commands.add_parser(
        "convert", help="write any supported model as a standard Hugging Face folder",
        description="Convert a model (short name, CTranslate2/faster-whisper folder, hub id) to a Hugging Face "
        "folder that plain transformers loads.",
        epilog="example: lite-whisper convert tiny.en ./whisper-tiny.en",
    )
    p.add_argument("source", help=MODEL_HELP)
    p.add_argument("output", type=Path, help="output folder (must not exist unless --overwrite)")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="weight dtype on disk")
    p.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
    p.set_defaults(run=run)


def run(args) -> int:
    from lite_whisper.models.loading import load_pytorch_model, save_model

    if args.output.exists() and not args.overwrite:
        raise CLIError(f"{args.output}: already exists; choose another output folder or pass --overwrite")
    model, processor = load_pytorch_model(args.source, dtype=args.dtype)
    save_model(model, processor, args.output, overwrite=args.overwrite)
    print(f"wrote {args.output} ({type(model).__name__}, {args.dtype})")
    return 0
