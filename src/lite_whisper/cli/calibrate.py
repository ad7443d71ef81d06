"""`lite-whisper calibrate`: only the statistics (no factorisation), e.g. one shard of a big calibration set."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from lite_whisper.cli.common import (
    MODEL_HELP,
    CLIError,
    add_calibration_options,
    add_device_option,
    check_device,
    open_calibration,
    positive,
)

EPILOG = """examples:
  lite-whisper calibrate base -o base.stats
  lite-whisper calibrate base --calibration big.tsv --shuffle-seed 0 --limit 4000 -o base-4000.stats
  torchrun --nproc-per-node 8 --no-python lite-whisper calibrate large-v3 --calibration big.tsv -o lv3.stats

Eight machines without torchrun: each takes one shard of the same (shuffled) list, then one
machine merges the files while it compresses:
  lite-whisper calibrate large-v3 --calibration big.tsv --shuffle-seed 0 --shard 3/8 -o shard3.stats  # on machine 3
  lite-whisper compress large-v3 --stats shard0.stats ... --stats shard7.stats -o large-v3-lite
"""


def add_parser(commands) -> None:
    p = commands.add_parser(
        "calibrate", help="collect calibration statistics only (mergeable shards)",
        description="Run the encoder over calibration audio and save the float64 moments of every encoder linear "
        "(what compress needs). Statistics of disjoint shards merge exactly: give compress several --stats.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help=MODEL_HELP + " (dense)")
    p.add_argument("-o", "--output", type=Path, required=True, help="statistics file to write")
    add_calibration_options(p)
    p.add_argument("--shard", metavar="I/N",
                   help="calibrate only clips I, I+N, I+2N, ... (0 <= I < N) of the (shuffled, limited) set")
    add_device_option(p)
    p.add_argument("--overwrite", action="store_true", help="replace the statistics file if it exists")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    index, _, count = text.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        raise CLIError(f"--shard takes I/N such as 3/8, got {text!r}") from None
    if not 0 <= shard[0] < shard[1]:
        raise CLIError(f"--shard {text}: need 0 <= I < N")
    return shard


def run(args) -> int:
    import torch

    from lite_whisper.calibration.calibrate import calibrate
    from lite_whisper.compression.compress import check_dense
    from lite_whisper.distributed import finish, initialise, process_device
    from lite_whisper.files import output_lock
    from lite_whisper.models.loading import load_pytorch_model
    from lite_whisper.runtime.threads import use_threads

    positive(args.limit, "--limit")
    positive(args.batch_size, "--batch-size")
    positive(args.threads, "--threads")
    use_threads(args.threads)
    shard = parse_shard(args.shard)
    check_device(args.device)
    if args.output.is_dir():
        raise CLIError(f"-o {args.output} is a folder; give a file name such as model.stats")
    if args.output.exists() and not args.overwrite:
        raise CLIError(f"{args.output}: already exists; choose another file or pass --overwrite")
    dataset = open_calibration(args)
    ranks = initialise(args.device)
    if shard is not None and ranks.distributed:
        raise CLIError("--shard splits the clips by hand; under torchrun the ranks already do: drop --shard")
    if shard is not None:
        dataset = dataset.sharded(*shard)
    try:
        with output_lock(args.output) if ranks.main else contextlib.nullcontext():
            model, processor = load_pytorch_model(args.model, dtype="float32", device=process_device(args.device))
            check_dense(model, args.model)
            statistics = calibrate(model, processor, dataset, batch_size=args.batch_size,
                                   exclude_padding=args.exclude_padding, progress=not args.no_progress,
                                   model_name=args.model, ranks=ranks, compute_dtype=getattr(torch, args.compute_dtype),
                                   products=args.products)
            if ranks.main:
                statistics.save(args.output)
                print(f"wrote {args.output}: {statistics.calibration_clips} clips, "
                      f"{statistics.calibration_frames} audio frames", file=sys.stderr)
    finally:
        finish(ranks)
    return 0

