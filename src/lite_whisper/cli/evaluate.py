"""`lite-whisper eval`: corpus WER, mean per-utterance WER and RTFx of a model on a dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lite_whisper.cli.common import (
    MODEL_HELP,
    add_decoding_options,
    add_model_options,
    check_device,
    check_output_file,
    decoding_options,
    open_dataset,
    positive,
)


def add_parser(commands) -> None:
    p = commands.add_parser(
        "eval", help="measure WER and speed on a dataset",
        description="Transcribe a dataset and report corpus WER, mean per-utterance WER and RTFx.",
        epilog="examples:\n"
        "  lite-whisper eval base --data ../shared/speech/splits/dev.txt --limit 20 --output base.json\n"
        "  torchrun --nproc-per-node 2 --no-python lite-whisper eval base --output base.json   # clips sharded",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument(
        "--data",
        help="dataset: folder, list file, .tsv/.jsonl manifest or hf:NAME[:CONFIG]:SPLIT "
        "(default: the dev split under $LITE_WHISPER_SPEECH or ../shared/speech)",
    )
    p.add_argument("--limit", type=int, help="evaluate only the first N clips")
    p.add_argument("--output", type=Path, help="write the full result (per-utterance rows too) as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--timestamps", action="store_true",
                   help="decode with timestamp tokens (Whisper's own default; the leaderboard convention is without)")
    add_decoding_options(p, language_default="en")
    add_model_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from lite_whisper.api import load_engine
    from lite_whisper.distributed import finish, initialise, process_device
    from lite_whisper.evaluation.evaluate import evaluate

    positive(args.limit, "--limit")
    positive(args.batch_size, "--batch-size")
    check_output_file(args.output, "result.json")
    options = decoding_options(args)
    check_device(args.device)
    dataset = open_dataset(args.data, args.limit, "evaluation", "dev.txt")
    ranks = initialise(args.device)  # under torchrun: each rank transcribes every N-th clip, rank 0 reports
    try:
        engine = load_engine(args.model, dtype=args.dtype, device=process_device(args.device),
                             encoder=args.encoder)
        if ranks.main:
            print(f"evaluating {args.model} on {dataset.description}", file=sys.stderr, flush=True)
        result = evaluate(engine, dataset, batch_size=args.batch_size, label=args.model,
                          options=options, progress=not args.no_progress, ranks=ranks)
    finally:
        finish(ranks)
    if result is None:  # not rank 0
        return 0
    result.model = args.model
    print(result.table())
    if args.output is not None:
        result.save(args.output)
        print(f"wrote {args.output}")
    return 0
