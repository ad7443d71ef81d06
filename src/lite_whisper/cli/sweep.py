"""`lite-whisper sweep`: one calibration, many thresholds, WER (and encoder speed) of each; Pareto plots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lite_whisper.cli.common import (
    MODEL_HELP,
    CLIError,
    add_augment_option,
    check_augment,
    open_dataset,
    open_datasets,
    positive,
    require_matplotlib,
)


def add_parser(commands) -> None:
    p = commands.add_parser(
        "sweep", help="calibrate once, compress at many thresholds, measure WER (and speed) of each",
        description="A measured Pareto frontier: one calibration, a compressed model per threshold, each "
        "evaluated (and its encoder timed) against the dense model. Writes DIR/pareto.json, DIR/pareto.png "
        "and DIR/ranks.png. Re-running the same command resumes an interrupted sweep; a run with other "
        "calibration or evaluation settings is refused (pass --restart to start the folder afresh).",
        epilog="examples:\n  lite-whisper sweep tiny.en --thresholds 0.999,0.99:0.999,0.99,0.95:0.99,0.95,0.9 -o sweeps/tiny.en\n"
        "  lite-whisper sweep tiny.en --targets 0.9,0.75,0.6 --methods paper,robust,allocate -o sweeps/tiny.en-frontier\n"
        "  lite-whisper sweep base --targets 0.75,0.6 --methods allocate,distill --distill-steps 128 -o sweeps/base",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("-o", "--output", type=Path, required=True, help="sweep folder (created, or resumed if it exists)")
    p.add_argument("--thresholds", default="", help="comma-separated thresholds of the paper's rule, each T or ATTN:MLP")
    p.add_argument("--targets", help="comma-separated encoder-parameter fractions, e.g. 0.9,0.75,0.6 (with --methods)")
    p.add_argument("--methods", help="comma-separated: paper and robust (one threshold searched to fit each target), "
                   "allocate (alias budget: ranks distributed by measured damage), distill (allocate, then the "
                   "factors trained for --distill-steps)")
    p.add_argument("--distill-steps", type=int, default=128, metavar="N",
                   help="training steps of the distill method (default: %(default)s)")
    p.add_argument("--calibration", help="calibration dataset spec (default: the shared calibration split)")
    p.add_argument("--data", action="append",
                   help="evaluation dataset spec (default: the shared dev split); given again (or a folder written by "
                   "`lite-whisper variants`), every point is also evaluated there: WER and loops per dataset and "
                   "the worst ratio to dense, while the frontier stays the first dataset's")
    p.add_argument("--limit", type=int, help="use only the first N calibration clips")
    add_augment_option(p)
    p.add_argument("--eval-limit", type=int, help="evaluate only the first N clips")
    p.add_argument("--batch-size", type=int, default=8, help="clips per batch for calibration and decoding")
    p.add_argument("--max-new-tokens", type=int, help=(
        "stop each transcript after N tokens (default: Whisper's 448-token limit); "
        "bounds the time a badly compressed model spends repeating itself"))
    p.add_argument("--no-bench", action="store_true", help="skip encoder timing (WER and size only)")
    p.add_argument("--repeats", type=int, default=5, help="timed encoder runs per model (default: 5)")
    p.add_argument("--heatmap", help="threshold whose ranks go into ranks.png (default: the first one)")
    p.add_argument("--restart", action="store_true",
                   help="discard results in the folder made with other settings and start again")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(run=run)


def run(args) -> int:
    from lite_whisper.distributed import finish, initialise
    from lite_whisper.experiments.sweep import parse_thresholds, sweep
    from lite_whisper.transcription.types import DecodingOptions

    for value, flag in ((args.limit, "--limit"), (args.eval_limit, "--eval-limit"), (args.repeats, "--repeats"),
                        (args.max_new_tokens, "--max-new-tokens"), (args.batch_size, "--batch-size"),
                        (args.distill_steps, "--distill-steps")):
        positive(value, flag)
    if args.output.exists() and not args.output.is_dir():
        raise CLIError(f"--output {args.output} is a file; give a folder for the sweep")
    try:
        targets = [float(t) for t in args.targets.split(",") if t.strip()] if args.targets else None
    except ValueError:
        raise CLIError(f"--targets takes comma-separated fractions such as 0.9,0.75, got {args.targets!r}") from None
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    parse_thresholds(args.thresholds.split(","), args.heatmap, targets, methods,
                     distill_steps=args.distill_steps)  # raises before anything runs
    require_matplotlib("sweep")
    check_augment(args.augment)
    calibration = open_dataset(args.calibration, args.limit, "calibration", "calibration.txt")
    datasets = open_datasets(args.data, args.eval_limit, "evaluation", "dev.txt")
    data, extra = datasets[0][1], [(label, dataset.spec) for label, dataset in datasets[1:]]

    options = DecodingOptions(language="en", max_new_tokens=args.max_new_tokens)
    thresholds = [t.strip() for t in args.thresholds.split(",") if t.strip()]
    ranks = initialise("cpu")  # under torchrun: calibration and evaluations sharded, rank 0 writes and times
    try:
        points = sweep(args.model, calibration.spec, data.spec, thresholds, args.output, limit=args.limit,
                       eval_limit=args.eval_limit, batch_size=args.batch_size, bench=not args.no_bench,
                       options=options, repeats=args.repeats, heatmap=args.heatmap, progress=not args.no_progress,
                       restart=args.restart, targets=targets, methods=methods, distill_steps=args.distill_steps,
                       extra_data=extra, augment=args.augment,
                       log=lambda message: print(message, file=sys.stderr, flush=True), ranks=ranks)
    finally:
        finish(ranks)
    if points is None:  # not rank 0
        return 0
    print(f"{'setting':<12} {'enc. params':>12} {'enc. GFLOPs':>12} {'WER %':>7} {'mean utt. %':>12} "
          f"{'latency ms':>11} {'vs dense':>9} {'same kern.':>10}  Pareto")
    for p in points:
        latency = f"{p.latency_ms:11.1f}" if p.latency_ms is not None else f"{'-':>11}"
        speedup = f"{p.speedup:9.2f}" if p.speedup is not None else f"{'-':>9}"
        same = f"{p.speedup_same_kernels:10.2f}" if p.speedup_same_kernels is not None else f"{'-':>10}"
        front = ",".join(name for name, flag in (("size", p.pareto_params), ("latency", p.pareto_latency)) if flag)
        print(f"{p.label:<12} {p.encoder_params / 1e6:>11.2f}M {p.encoder_flops / 1e9:>12.2f} {p.wer:>7.2f} "
              f"{p.mean_utterance_wer:>12.2f} {latency} {speedup} {same}  {front}")
    if extra:
        print("\n" + worst_ratio_table(points, [label for label, _ in extra]))
    print("vs dense: against the dense model as users run it (stock transformers); same kern.: against the dense "
          "model on the same kernels (what the compression alone buys)")
    print(f"wrote {args.output / 'pareto.json'}, {args.output / 'pareto.png'}, {args.output / 'ranks.png'}")
    return 0


def worst_ratio_table(points, labels: list[str]) -> str:
    """Per point: WER on each further dataset, the worst ratio to the dense model's there, and loops."""
    dense = next(p for p in points if p.label == "dense")
    width = max(len("setting"), *(len(p.label) for p in points))
    head = " ".join(f"{label[:12]:>12}" for label in labels)
    lines = [f"{'setting':<{width}} {head} {'worst ratio':>11} {'loops':>5}"]
    for p in points:
        ratios = [(p.wer_by_data[label] / dense.wer_by_data[label]) if dense.wer_by_data[label] else float("inf")
                  for label in labels]
        cells = " ".join(f"{p.wer_by_data[label]:>12.2f}" for label in labels)
        lines.append(f"{p.label:<{width}} {cells} {max(ratios):>11.3f} {sum(p.loops_by_data.values()):>5}")
    return "WER % on the further datasets\n" + "\n".join(lines)
