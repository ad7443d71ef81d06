"""The encoders of several exported folders, timed taking turns on one 30 s window.

    python scripts/export_encoder_timing.py runs/frontier/exports/base runs/frontier/exports/base-p75 \
        --encoder int8 --threads 2 --repeats 15 [--json out.json]

Each folder's encoder of the kind asked (int8, float32 or bfloat16: `runtime.encoders.open_encoder`) runs
one random 30 s window at `--batch-size`, after a warm-up, A B C A B C ... (`encoder_timing.time_interleaved`,
the same rule as `bench`); prints each median and its gain over the first folder. For figures worth
recording, keep the machine otherwise idle.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from lite_whisper.benchmark.encoder_timing import time_interleaved
from lite_whisper.benchmark.environment import environment
from lite_whisper.export_manifest import read_manifest
from lite_whisper.lowrank.cost import MEL_FRAMES
from lite_whisper.runtime.encoders import open_encoder


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="exported folders; the first is the baseline")
    parser.add_argument("--encoder", default="int8", choices=["int8", "float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    encoders = []
    for folder in args.folders:
        manifest = read_manifest(folder)
        if args.encoder != "bfloat16" and not manifest["encoder"].get(args.encoder):
            print(f"error: {folder} has no {args.encoder} encoder", file=sys.stderr)
            return 2
        encoder = open_encoder(folder, manifest, args.encoder, threads=args.threads)
        encoders.append(lambda features, encoder=encoder: encoder(features.numpy()))
    mels = json.loads((args.folders[0] / "config.json").read_text())["num_mel_bins"]
    features = torch.randn(args.batch_size, mels, MEL_FRAMES, generator=torch.Generator().manual_seed(0))
    samples = time_interleaved(encoders, features, args.repeats, args.warmup)
    medians = [statistics.median(times) for times in samples]
    rows = [{"folder": str(folder), "median_ms": median, "min_ms": min(times), "gain": medians[0] / median}
            for folder, median, times in zip(args.folders, medians, samples)]
    for row in rows:
        print(f"{row['median_ms']:8.1f} ms  ({row['gain']:.2f}x)  {row['folder']}")
    if args.json:
        args.json.write_text(json.dumps({"encoder": args.encoder, "threads": args.threads,
                                         "batch_size": args.batch_size, "repeats": args.repeats, "rows": rows,
                                         "environment": environment()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
