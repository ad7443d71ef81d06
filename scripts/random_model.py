"""Save a random-weight dense Whisper folder of a real architecture, for memory and time measurements.

    .venv/bin/python scripts/random_model.py large-v3 runs/random-large-v3 --decoder-layers 2

Random weights have the real shapes (encoder as released, decoder cut to --decoder-layers),
so compress/bench times and memory are those of the real model; accuracy means nothing.
The processor is `models.random.random_whisper`'s (the multilingual tokenizer shipped with the
base weights; large-v3's vocabulary derived from it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lite_whisper.models.architectures import ARCHITECTURES
from lite_whisper.models.random import random_whisper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("arch", choices=sorted(ARCHITECTURES))
    parser.add_argument("output", type=Path)
    parser.add_argument("--decoder-layers", type=int, default=2)
    args = parser.parse_args()
    if args.output.exists():
        parser.error(f"{args.output} exists; choose another folder or delete it")
    try:
        model, processor = random_whisper(args.arch, decoder_layers=args.decoder_layers)
    except ValueError as error:  # the tokenizer's package is missing
        parser.error(str(error))
    model.save_pretrained(args.output)
    processor.save_pretrained(args.output)
    print(f"wrote {args.output}: {args.arch} encoder, {args.decoder_layers}-layer decoder, random weights")


if __name__ == "__main__":
    main()
