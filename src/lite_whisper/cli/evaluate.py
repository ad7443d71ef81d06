"""`lite-whisper eval`: corpus WER, mean per-utterance WER and RTFx of a model on a dataset."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from lite_whisper.cli.common import (
    MODEL_HELP,
    CLIError,
    add_decoding_options,
    add_model_options,
    backend_of,
    check_device,
    check_output_file,
    decoding_options,
    default_dtype,
    open_datasets,
    positive,
)


def add_parser(commands) -> None:
    p = commands.add_parser(
        "eval", help="measure WER and speed on a dataset",
        description="Transcribe a dataset and report corpus WER, mean per-utterance WER and RTFx.",
        epilog="examples:\n"
        "  lite-whisper eval base --data ../shared/speech/splits/dev.txt --limit 20 --output base.json\n"
        "  lite-whisper eval tiny.en --data ../shared/speech/splits/dev.txt --data dev-variants --output all.json\n"
        "  torchrun --nproc-per-node 2 --no-python lite-whisper eval base --output base.json   # clips sharded",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument(
        "--data", action="append",
        help="dataset: folder, list file, .tsv/.jsonl manifest or hf:NAME[:CONFIG]:SPLIT, or a folder written by "
        "`lite-whisper variants` (every variant in it); give it several times to evaluate on each "
        "(default: the dev split under $LITE_WHISPER_SPEECH or ../shared/speech)",
    )
    p.add_argument("--limit", type=int, help="evaluate only the first N clips")
    p.add_argument("--output", type=Path, help="write the full result (per-utterance rows too) as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--record", action="store_true",
                   help="MODEL is a folder: add the WER on each dataset, with this command, to its "
                   "lite_whisper_results.json and to the measured table of its model card (README.md)")
    p.add_argument("--timestamps", action="store_true",
                   help="decode with timestamp tokens (Whisper's own default; the leaderboard convention is without)")
    add_decoding_options(p, language_default="en")
    add_model_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    from lite_whisper.api import load_engine
    from lite_whisper.distributed import finish, initialise, process_device
    from lite_whisper.evaluation.evaluate import evaluate
    from lite_whisper.files import write_json_atomic

    positive(args.limit, "--limit")
    positive(args.batch_size, "--batch-size")
    positive(args.threads, "--threads")
    check_output_file(args.output, "result.json")
    if args.record and not Path(args.model).is_dir():
        raise CLIError(f"--record writes into the model's folder, and {args.model} is not a folder")
    options = decoding_options(args)
    check_device(args.device)
    datasets = open_datasets(args.data, args.limit, "evaluation", "dev.txt")
    ranks = initialise(args.device)  # under torchrun: each rank transcribes every N-th clip, rank 0 reports
    results = []
    try:
        engine = load_engine(args.model, backend_of(args), dtype=args.dtype or default_dtype(args.device),
                             device=process_device(args.device), encoder=args.encoder, threads=args.threads)
        for label, dataset in datasets:
            if ranks.main:
                print(f"evaluating {args.model} on {dataset.description}", file=sys.stderr, flush=True)
            result = evaluate(engine, dataset, batch_size=args.batch_size, label=f"{args.model} on {label}"
                              if len(datasets) > 1 else args.model,
                              options=options, progress=not args.no_progress, ranks=ranks)
            if result is not None:
                result.model = args.model
                results.append((label, result))
    finally:
        finish(ranks)
    if not ranks.main:
        return 0
    if len(results) == 1:
        print(results[0][1].table())
        if args.output is not None:
            results[0][1].save(args.output)
    else:
        print(datasets_table(results))
        if args.output is not None:
            write_json_atomic(args.output, {"model": args.model, "datasets": [
                {"label": label, **result.to_dict()} for label, result in results]})
    if args.output is not None:
        print(f"wrote {args.output}")
    if args.record:
        from lite_whisper.models.model_card import RESULTS_FILE, record_results

        command = shlex.join(args.command_line)
        record_results(args.model, [{"measure": "WER % (greedy)" if options.beam_size == 1 else
                                     f"WER % (beam {options.beam_size})", "on": f"{label} ({result.clips} clips)",
                                     "value": f"{result.wer:.2f}", "command": command} for label, result in results])
        print(f"recorded in {Path(args.model) / RESULTS_FILE} and the folder's model card")
    return 0


def datasets_table(results) -> str:
    """One row per dataset: clips, corpus and mean-utterance WER, insertions, looping and cut-short utterances, RTFx."""
    width = max(len("dataset"), *(len(label) for label, _ in results))
    lines = [f"{'dataset':<{width}} {'clips':>5} {'WER %':>7} {'mean utt. %':>11} {'ins.':>5} {'loops':>5} {'cut':>4} {'RTFx':>6}"]
    for label, r in results:
        lines.append(f"{label:<{width}} {r.clips:>5} {r.wer:>7.2f} {r.mean_utterance_wer:>11.2f} {r.insertions:>5} "
                     f"{len(r.loops):>5} {len(r.cut_short):>4} {r.rtfx:>6.1f}")
    return "\n".join(lines)
