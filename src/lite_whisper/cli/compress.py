"""`lite-whisper compress`: calibrate (or load statistics), factorise the encoder, save a lite-whisper folder."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from lite_whisper.cli.common import (
    MODEL_HELP,
    CLIError,
    add_calibration_options,
    add_device_option,
    check_device,
    open_calibration,
    open_datasets,
    positive,
)


DEFAULT_DISTILL_STEPS = 32  # with a size target; measured in docs/RESULTS.md §14


def add_parser(commands) -> None:
    p = commands.add_parser(
        "compress", help="compress the encoder (LiteASR) and save a lite-whisper folder",
        description="Calibrate on audio, pick the rank of every encoder linear (by explained variance beyond the "
        "few massive directions: the robust rule; or, with --target-params/--target-flops, by measured damage under "
        "that budget), factorise the linears and save a Hugging Face folder that loads with or without lite-whisper.",
        epilog="examples:\n"
        "  lite-whisper compress tiny.en -o tiny.en-lite --evaluate\n"
        "  lite-whisper compress base --threshold 0.95 --limit 32 --stats base.stats -o base-0.95\n"
        "  lite-whisper compress base --threshold 0.99 --stats base.stats -o base-0.99   # reuses the statistics\n"
        "  lite-whisper compress base --target-params 0.75 --distill-steps 128 -o base-75   # a size, then training\n"
        "  lite-whisper compress base --stats shard1.stats --stats shard2.stats -o base-lite   # merged shards\n"
        "  torchrun --nproc-per-node 4 --no-python lite-whisper compress base -o base-lite   # sharded calibration",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help=MODEL_HELP + " (dense: not an already compressed folder)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (must not exist unless --overwrite)")
    p.add_argument("--threshold", default="0.99:0.999",
                   help="explained-variance threshold for all six linears, or ATTN:MLP (default: %(default)s)")
    p.add_argument("--rank-rule", choices=["paper", "robust", "allocate"],
                   help="paper: the LiteASR explained-variance rule; robust: the same measured without the few "
                   "massive directions (always kept); allocate: with a --target-*, ranks distributed by measured "
                   "damage (default: robust, or allocate with a target). With a target, paper and robust search "
                   "the one threshold that fits it")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--target-params", type=float, metavar="F",
                        help="compress to this fraction of the dense encoder's parameters (e.g. 0.75), ranks allocated "
                        "across all linears by measured damage; --threshold is then unused")
    budget.add_argument("--target-flops", type=float, metavar="F",
                        help="likewise, to this fraction of the dense encoder's FLOPs at 30 s")
    p.add_argument("--rank-multiple", type=int, default=16, help="ranks are multiples of this (default: 16)")
    p.add_argument("--distill-steps", type=int, metavar="N",
                   help="afterwards, train only the factors for N steps so the encoder's output matches the dense "
                   "one's on the calibration audio (decoder frozen; a few clips held out pick the best step). "
                   f"Default: {DEFAULT_DISTILL_STEPS} with --target-params/--target-flops (measured: 2.3 min for "
                   "tiny.en and 5 for base on 2 cores), 0 with --threshold (the paper's method as it is); "
                   "0 turns it off, 128 is the long recipe (4.5 / 9.5 min)")
    p.add_argument("--distill-lr", type=float, default=1e-4, metavar="LR",
                   help="distillation learning rate (Adam, warm-up then cosine decay; default: %(default)g)")
    p.add_argument("--distill-batch-size", type=int, default=4, metavar="B",
                   help="calibration clips per distillation step (default: %(default)s)")
    add_calibration_options(p)
    p.add_argument(
        "--stats", type=Path, action="append",
        help="statistics file: loaded if it exists (given twice or more: merged), else written after calibrating",
    )
    p.add_argument("--allow-stats-mismatch", action="store_true",
                   help="use --stats files taken on other weights of the same shape (refused by default)")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32", "bfloat16"],
                   help="weight dtype on disk (default: float16)")
    add_device_option(p, " for calibration")
    p.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
    p.add_argument("--evaluate", action="store_true",
                   help="afterwards, evaluate the dense and the compressed model on --data and compare")
    p.add_argument("--data", action="append",
                   help="evaluation dataset for --evaluate (default: the dev split); give it several times, or a "
                   "folder written by `lite-whisper variants`, to compare on each")
    p.add_argument("--eval-limit", type=int, help="with --evaluate: evaluate only the first N clips")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(run=run)


def run(args) -> int:
    from lite_whisper.compression.config import CompressionConfig
    from lite_whisper.distributed import finish, initialise
    from lite_whisper.files import output_lock
    from lite_whisper.runtime.threads import use_threads

    # Validate everything cheap before the expensive part.
    config = CompressionConfig.parse(args.threshold, rank_multiple=args.rank_multiple, rank_rule=args.rank_rule,
                                     target_params=args.target_params, target_flops=args.target_flops)
    for value, flag in ((args.limit, "--limit"), (args.batch_size, "--batch-size"), (args.eval_limit, "--eval-limit"),
                        (args.distill_batch_size, "--distill-batch-size")):
        positive(value, flag)
    positive(args.threads, "--threads")
    use_threads(args.threads)
    from lite_whisper.compression.distill import DistillConfig

    default_distillation = args.distill_steps is None
    if default_distillation:  # a size target: a short distillation by default (docs/RESULTS.md §14)
        args.distill_steps = DEFAULT_DISTILL_STEPS if config.budget is not None else 0
    try:
        args.distillation = DistillConfig(steps=args.distill_steps, learning_rate=args.distill_lr,
                                          batch_size=args.distill_batch_size)
    except ValueError as error:
        raise CLIError(str(error)) from None
    check_device(args.device)
    if args.output.exists() and not args.overwrite:
        raise CLIError(f"{args.output}: already exists; choose another output folder or pass --overwrite")
    stats_files = args.stats or []
    existing = [path for path in stats_files if path.exists()]
    if len(stats_files) > 1 and len(existing) < len(stats_files):
        missing = ", ".join(str(p) for p in stats_files if not p.exists())
        raise CLIError(f"--stats given several times merges existing files, but these do not exist: {missing}")
    for path in stats_files:
        if path.is_dir():
            raise CLIError(f"--stats {path} is a folder; give a file name such as model.stats")
    if not existing or (args.distill_steps and not default_distillation):  # distillation trains on the audio itself
        calibration = open_calibration(args)
    elif config.budget is not None and args.calibration is not None:  # a few clips measure each linear's damage
        calibration = open_calibration(args)
    elif config.budget is not None:
        try:  # the default split, if it is there; else damage is estimated from variance (with a warning)
            calibration = open_calibration(args, default_only=True)
        except CLIError:
            calibration = None
    else:
        calibration = None
    if calibration is None and args.distillation.steps:  # statistics without audio: nothing to train on
        print("note: no calibration audio (statistics given, no --calibration): compressing without the default "
              "distillation", file=sys.stderr)
        args.distillation = DistillConfig(steps=0)
    if not args.evaluate and (args.data is not None or args.eval_limit is not None):
        raise CLIError("--data and --eval-limit only apply with --evaluate")
    evaluation = open_datasets(args.data, args.eval_limit, "evaluation", "dev.txt") if args.evaluate else None

    ranks = initialise(args.device)  # under torchrun: join the job (every rank validated the same input)
    try:
        with output_lock(args.output) if ranks.main else contextlib.nullcontext():  # fails now, not after calibrating
            _compress(args, config, calibration, evaluation, stats_files, ranks)
    finally:
        finish(ranks)
    return 0


def _compress(args, config, calibration, evaluation, stats_files, ranks) -> None:
    from lite_whisper.compression.compress import check_dense
    from lite_whisper.compression.pipeline import compress_and_save, load_or_calibrate
    from lite_whisper.distributed import on_main, process_device
    from lite_whisper.models.loading import load_pytorch_model, resolve_dtype

    start = time.perf_counter()
    model, processor = load_pytorch_model(args.model, dtype="float32", device=process_device(args.device))
    check_dense(model, args.model)
    log = (lambda message: print(message, file=sys.stderr)) if ranks.main else (lambda message: None)  # noqa: E731
    loaded = load_or_calibrate(model, processor, calibration, stats_files=stats_files, limit=args.limit,
                               batch_size=args.batch_size, exclude_padding=args.exclude_padding,
                               progress=not args.no_progress, model_name=args.model, log=log, ranks=ranks,
                               compute_dtype=resolve_dtype(args.compute_dtype), products=args.products)
    def factorise_and_save():  # rank 0 alone
        report = compress_and_save(model, processor, loaded, config, args.output, model_name=args.model,
                                   dtype=resolve_dtype(args.dtype), overwrite=args.overwrite,
                                   allow_other_weights=args.allow_stats_mismatch, started=start,
                                   calibration=calibration, distillation=args.distillation,
                                   progress=not args.no_progress, log=log)
        print(report.table())
        print(f"wrote {args.output}" + (f" (calibrated on {ranks.world_size} ranks)" if ranks.distributed else ""))

    if evaluation is None:
        if ranks.main:
            factorise_and_save()
        return
    on_main(ranks, factorise_and_save)  # then every rank loads the folder (one machine or a shared filesystem)
    _compare(args, (model, processor), args.output, evaluation, ranks)


def _compare(args, dense, compressed_folder: Path, datasets, ranks) -> None:
    """Evaluate the dense and the compressed model on the same data and print them side by side, per dataset."""
    from lite_whisper.api import load_model
    from lite_whisper.distributed import process_device
    from lite_whisper.evaluation.evaluate import evaluate
    from lite_whisper.lowrank.cost import encoder_flops, encoder_params
    from lite_whisper.transcription.types import DecodingOptions

    compressed = load_model(compressed_folder, dtype="float32", device=process_device(args.device))
    options = DecodingOptions(language="en")
    compared = []
    for label, dataset in datasets:
        if ranks.main:
            print(f"\nevaluating the dense and the compressed model on {dataset.description}", file=sys.stderr, flush=True)
        rows = []
        for name, pair in (("dense", dense), ("compressed", compressed)):
            result = evaluate(pair, dataset, options=options, progress=not args.no_progress, ranks=ranks, label=name)
            rows.append((name, encoder_params(pair[0]), encoder_flops(pair[0]), result))
        compared.append((label, rows))
    if not ranks.main:
        return
    for label, rows in compared:
        print(f"\nevaluated on {label} ({rows[0][3].clips} clips, {rows[0][3].words} words)")
        print(f"{'model':<11} {'enc. params':>12} {'enc. GFLOPs':>12} {'WER %':>7} {'mean utt. WER %':>16} "
              f"{'loops':>5} {'cut':>4} {'RTFx':>6}")
        for name, params, flops, result in rows:
            print(f"{name:<11} {params / 1e6:>11.2f}M {flops / 1e9:>12.2f} {result.wer:>7.2f} "
                  f"{result.mean_utterance_wer:>16.2f} {len(result.loops):>5} {len(result.cut_short):>4} "
                  f"{result.rtfx:>6.1f}")
    if len(compared) > 1:
        print("\n" + ratio_table([(label, rows[0][3], rows[1][3]) for label, rows in compared]))


def ratio_table(pairs) -> str:
    """Per dataset: dense and compressed WER, their ratio, looping and cut-short utterances of each; the worst ratio."""
    width = max(len("dataset"), *(len(label) for label, _, _ in pairs))
    lines = [f"{'dataset':<{width}} {'dense %':>8} {'compr. %':>8} {'ratio':>6} {'loops d/c':>9} {'cut d/c':>7}"]
    ratios = []
    for label, dense, compressed in pairs:
        ratio = compressed.wer / dense.wer if dense.wer > 0 else float("inf") if compressed.wer > 0 else 1.0
        ratios.append((ratio, label))
        lines.append(f"{label:<{width}} {dense.wer:>8.2f} {compressed.wer:>8.2f} {ratio:>6.3f} "
                     f"{len(dense.loops):>4}/{len(compressed.loops):<4} "
                     f"{len(dense.cut_short):>3}/{len(compressed.cut_short):<3}")
    worst, where = max(ratios)
    lines.append(f"worst ratio {worst:.3f} ({where})")
    return "\n".join(lines)
