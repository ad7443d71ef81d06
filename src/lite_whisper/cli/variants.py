"""`lite-whisper variants`: harder evaluation sets (noise, reverberation, telephone, speed) made from a clean one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lite_whisper.cli.common import CLIError, open_dataset, positive


def add_parser(commands) -> None:
    p = commands.add_parser(
        "variants", help="degrade a dataset (noise, reverb, telephone, speed) into harder evaluation sets",
        description="Write every clip of a dataset degraded in fixed, seeded ways, one folder per variant "
        "(each a dataset spec with its transcripts.tsv) and a variants.json manifest. White, pink and babble "
        "noise (babble: four other clips of the same dataset) at 20, 10 and 5 dB SNR; a synthetic room "
        "(RT60 0.6 s); a telephone channel (8 kHz, 300-3400 Hz, mu-law); speed 0.9x and 1.1x. Give the "
        "folder to eval / compress --evaluate as --data to evaluate on every variant. Keep it outside "
        "your repository: it is as large as the source set times the number of variants.",
        epilog="examples:\n"
        "  lite-whisper variants --data ../shared/speech/splits/dev.txt -o ~/speech-variants/dev\n"
        "  lite-whisper variants --data dev.tsv --variants babble-10db,telephone,reverb-1.2s -o dev-hard\n"
        "  lite-whisper eval tiny.en --data ~/speech-variants/dev --output tiny.en-variants.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (must not exist unless --overwrite)")
    p.add_argument("--data", help="the clean dataset (default: the dev split under $LITE_WHISPER_SPEECH or "
                   "../shared/speech)")
    p.add_argument("--variants", default="all",
                   help="'all' (13 standard variants) or names such as white-10db,pink-5db,babble-20db,reverb-0.6s,"
                   "telephone,speed-0.9 (default: all)")
    p.add_argument("--limit", type=int, help="only the first N clips")
    p.add_argument("--seed", type=int, default=0, help="fixes every noise draw and babble talker (default: 0)")
    p.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run)


def run(args) -> int:
    from lite_whisper.data.augment import parse_variants
    from lite_whisper.data.variants import build_variants

    positive(args.limit, "--limit")
    try:
        variants = parse_variants(args.variants)
    except ValueError as error:
        raise CLIError(f"--variants: {error}") from None
    if args.output.exists() and not args.overwrite:
        raise CLIError(f"{args.output}: already exists; choose another output folder or pass --overwrite")
    dataset = open_dataset(args.data, args.limit, "evaluation", "dev.txt")
    print(f"degrading {dataset.description} {len(variants)} ways", file=sys.stderr, flush=True)
    manifest = build_variants(dataset, variants, args.output, seed=args.seed, overwrite=args.overwrite,
                              progress=not args.no_progress)
    for entry in manifest["variants"]:
        snr = entry.get("measured_snr_db")
        reached = f"  SNR reached {snr['min']:.2f}..{snr['max']:.2f} dB" if snr else ""
        print(f"{entry['name']:<14} {entry['clips']} clips, {entry['seconds'] / 60:.1f} min{reached}")
    print(f"wrote {args.output} ({len(variants)} variants of {manifest['clips']} clips; manifest "
          f"{args.output / 'variants.json'})")
    return 0
