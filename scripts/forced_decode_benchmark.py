"""Large models on the CPU, end to end: exports against faster-whisper, every window decoding exactly N tokens.

    .venv/bin/python scripts/forced_decode_benchmark.py \
        --export compressed=runs/large/turbo-60-export --export dense=runs/large/turbo-dense-export \
        --faster-whisper-random large-v3-turbo --windows 6 --tokens 100 --batch 4 --threads 2 \
        --output runs/large/turbo-forced.json

Random weights time like the real ones; their text means nothing, hence the forced tokens (see
lite_whisper.benchmark.forced_decode). Each export runs one window at a time (sequential) and
--batch at a time; faster-whisper runs `transcribe()` window by window and its batched pipeline.
They take turns window chunk by window chunk after a warm-up (`benchmark.harness`), each in a
process of its own; one that fails or runs out of memory is reported and the others finish.
`--faster-whisper-random ARCH` converts the same dense random model `export --random-weights ARCH`
writes (seed 0) with CTranslate2's converter to int8, as faster-whisper users' models are made.
JSON and a markdown table are written.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from lite_whisper.benchmark.environment import environment
from lite_whisper.benchmark.forced_decode import ForcedContender, run_forced, speech_windows
from lite_whisper.data.datasets import default_speech_dir, load_dataset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", action="append", default=[], metavar="NAME=FOLDER", help="an exported folder")
    parser.add_argument("--faster-whisper", metavar="FOLDER", help="a CTranslate2 folder for faster-whisper")
    parser.add_argument("--faster-whisper-random", metavar="ARCH",
                        help="convert the dense random ARCH model for faster-whisper (kept in --cache)")
    parser.add_argument("--cache", type=Path, default=Path("runs/large"), help="where converted folders are kept")
    parser.add_argument("--windows", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", help="clips whose audio fills the windows (default: the dev split)")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    fw_folder = args.faster_whisper
    if args.faster_whisper_random:
        fw_folder = str(convert_random(args.faster_whisper_random, args.cache))
    contenders = []
    for spec in args.export:
        name, _, folder = spec.partition("=")
        contenders += [ForcedContender(f"{name} export", "export", folder, 1),
                       ForcedContender(f"{name} export b{args.batch}", "export", folder, args.batch)]
    if fw_folder:
        contenders += [ForcedContender("faster-whisper int8", "faster-whisper", fw_folder, 1),
                       ForcedContender(f"faster-whisper int8 batched b{args.batch}", "faster-whisper-batched",
                                       fw_folder, args.batch)]
    if not contenders:
        parser.error("nothing to time: give --export NAME=FOLDER and/or --faster-whisper(-random)")
    dataset = load_dataset(args.data or default_speech_dir() / "splits" / "dev.txt")
    clips, needed = [], args.windows * 30 * 16000
    for clip in dataset:
        clips.append(clip.audio)
        if sum(len(c) for c in clips) >= needed:
            break
    windows = speech_windows(clips, args.windows)
    print(f"{len(contenders)} contenders, {args.windows} windows of {args.tokens} tokens, taking turns ...",
          file=sys.stderr, flush=True)
    results = run_forced(contenders, windows, args.tokens, args.threads,
                         log=lambda message: print(message, file=sys.stderr, flush=True))
    report = {"windows": args.windows, "tokens_per_window": args.tokens, "threads": args.threads,
              "environment": environment(), "results": [asdict(r) for r in results]}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    if any(result.failure for result in results):
        return 1
    return 0


def convert_random(arch: str, cache: Path) -> Path:
    """The dense random `arch` model (seed 0, as `export --random-weights` builds it) as CTranslate2 int8."""
    from lite_whisper.models.ctranslate2.decoder import convert_to_ctranslate2
    from lite_whisper.models.random import random_whisper

    folder = cache / f"{arch}-random-ct2-int8"
    if not (folder / "model.bin").exists():
        print(f"converting the dense random {arch} model with CTranslate2's converter ...", file=sys.stderr, flush=True)
        model, processor = random_whisper(arch)
        convert_to_ctranslate2(model, processor, folder, "int8")
    return folder


def table(results) -> str:
    lines = ["| contender | encoder | RTFx | encoder ms / window | decoder ms / token | peak RSS GB | weights GB |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        if r.failure:
            lines.append(f"| {r.name} | failed: {r.failure} | | | | | |")
            continue
        lines.append(f"| {r.name} | {r.encoder} | {r.rtfx:.3f} | {r.encoder_ms_per_window:.0f} | "
                     f"{r.decoder_ms_per_token:.1f} | {r.peak_rss_mb / 1024:.2f} | {r.weight_mb / 1024:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
