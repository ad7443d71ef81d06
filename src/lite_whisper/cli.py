"""The `lite-whisper` command: parse, validate, call the library, print.

`main(argv)` returns an exit code, so tests call it directly.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EPILOG = """examples:
  lite-whisper eval tiny.en --data ../shared/speech/splits/dev.txt --output tiny.json
  lite-whisper transcribe base talk.flac --timestamps
  lite-whisper convert ./faster-whisper-base ./whisper-base-hf
  lite-whisper compress tiny.en --calibration ../shared/speech/splits/calibration.txt -o tiny-lite
  lite-whisper bench tiny-lite --baseline tiny.en --batch-size 1,4
  lite-whisper sweep tiny.en --thresholds 0.99:0.999,0.95 -o sweeps/tiny.en
"""


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument(
        "--dtype", default="float32", choices=["float32", "float16", "bfloat16"], help="compute dtype (default: float32)"
    )


def _add_decoding_options(parser: argparse.ArgumentParser, language_default: str | None) -> None:
    parser.add_argument(
        "--language", default=language_default,
        help="spoken language code, e.g. en (default: %(default)s; none = detect, multilingual models only)",
    )
    parser.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    parser.add_argument("--beam-size", type=int, default=1, help="beam width; 1 = greedy (default: 1)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips decoded together (default: 8)")
    parser.add_argument("--max-new-tokens", type=int, help=(
        "stop each transcript after N tokens (default: Whisper's 448-token limit); "
        "bounds the time a badly compressed model spends repeating itself"))


def build_parser() -> argparse.ArgumentParser:
    from lite_whisper import __version__
    from lite_whisper.data.datasets import default_speech_dir

    parser = argparse.ArgumentParser(
        prog="lite-whisper",
        description="Compress Whisper's encoder with calibrated low-rank approximation; measure WER and speed.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lite-whisper {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    model_help = "a short name (tiny.en, base), a Hugging Face or CTranslate2 folder, or a hub id"
    dev_split = default_speech_dir() / "splits" / "dev.txt"

    p = commands.add_parser(
        "transcribe", help="transcribe audio files",
        description="Transcribe audio files (any length, any sample rate) with a Whisper model.",
        epilog="example: lite-whisper transcribe tiny.en a.flac b.wav --json",
    )
    p.add_argument("model", help=model_help)
    p.add_argument("files", nargs="+", type=Path, help="audio files (wav, flac, ogg, mp3)")
    _add_decoding_options(p, language_default=None)
    p.add_argument("--timestamps", action="store_true", help="print segments with start/end times")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_model_options(p)
    p.set_defaults(run=run_transcribe)

    p = commands.add_parser(
        "eval", help="measure WER and speed on a dataset",
        description="Transcribe a dataset and report corpus WER, mean per-utterance WER and RTFx.",
        epilog=f"example: lite-whisper eval base --data {dev_split} --limit 20 --output base.json",
    )
    p.add_argument("model", help=model_help)
    p.add_argument(
        "--data", default=str(dev_split),
        help="dataset: folder, list file, .tsv/.jsonl manifest or hf:NAME[:CONFIG]:SPLIT "
        "(default: the dev split under $LITE_WHISPER_SPEECH or ../shared/speech)",
    )
    p.add_argument("--limit", type=int, help="evaluate only the first N clips")
    p.add_argument("--output", type=Path, help="write the full result (per-utterance rows too) as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--timestamps", action="store_true",
                   help="decode with timestamp tokens (Whisper's own default; the leaderboard convention is without)")
    _add_decoding_options(p, language_default="en")
    _add_model_options(p)
    p.set_defaults(run=run_eval)

    p = commands.add_parser(
        "convert", help="write any supported model as a standard Hugging Face folder",
        description="Convert a model (short name, CTranslate2/faster-whisper folder, hub id) to a Hugging Face "
        "folder that plain transformers loads.",
        epilog="example: lite-whisper convert tiny.en ./whisper-tiny.en",
    )
    p.add_argument("source", help=model_help)
    p.add_argument("output", type=Path, help="output folder (must not exist unless --overwrite)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"], help="weight dtype on disk")
    p.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
    p.set_defaults(run=run_convert)

    p = commands.add_parser(
        "compress", help="compress the encoder (LiteASR) and save a lite-whisper folder",
        description="Calibrate on audio, pick per-layer ranks by explained variance, factorise the encoder's "
        "linears and save a Hugging Face folder that loads with or without lite-whisper.",
        epilog="examples:\n"
        "  lite-whisper compress tiny.en -o tiny.en-lite --evaluate\n"
        "  lite-whisper compress base --threshold 0.95 --limit 32 --stats base.stats -o base-0.95\n"
        "  lite-whisper compress base --threshold 0.99 --stats base.stats -o base-0.99   # reuses the statistics",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help=model_help)
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (must not exist unless --overwrite)")
    p.add_argument(
        "--calibration", default=str(default_speech_dir() / "splits" / "calibration.txt"),
        help="calibration dataset spec (default: the calibration split under $LITE_WHISPER_SPEECH or ../shared/speech)",
    )
    p.add_argument("--threshold", default="0.99:0.999",
                   help="explained-variance threshold for all six linears, or ATTN:MLP (default: %(default)s)")
    p.add_argument("--rank-multiple", type=int, default=16, help="ranks are multiples of this (default: 16)")
    p.add_argument("--limit", type=int, help="use only the first N calibration clips")
    p.add_argument("--batch-size", type=int, default=8, help="calibration clips per encoder pass (default: 8)")
    p.add_argument("--exclude-padding", action="store_true",
                   help="count only frames that carry audio (default: all 1500 frames per clip, as the paper)")
    p.add_argument(
        "--stats", type=Path, action="append",
        help="statistics file: loaded if it exists (given twice or more: merged), else written after calibrating",
    )
    p.add_argument("--dtype", default="float16", choices=["float16", "float32", "bfloat16"],
                   help="weight dtype on disk (default: float16)")
    p.add_argument("--device", default="cpu", help="torch device for calibration (default: cpu)")
    p.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
    p.add_argument("--evaluate", action="store_true",
                   help="afterwards, evaluate the dense and the compressed model on --data and compare")
    p.add_argument("--data", default=str(dev_split), help="evaluation dataset for --evaluate (default: dev split)")
    p.add_argument("--eval-limit", type=int, help="evaluate only the first N clips")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(run=run_compress)

    p = commands.add_parser(
        "inspect", help="print ranks, parameters and FLOPs of a saved model",
        description="Print the per-layer ranks, encoder parameters and encoder FLOPs of a model.",
        epilog="example: lite-whisper inspect tiny.en-lite",
    )
    p.add_argument("model", help="a lite-whisper folder (or any model spec)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run_inspect)

    p = commands.add_parser(
        "sweep", help="calibrate once, compress at many thresholds, measure WER (and speed) of each",
        description="A measured Pareto frontier: one calibration, a compressed model per threshold, each "
        "evaluated (and its encoder timed) against the dense model. Writes DIR/pareto.json, DIR/pareto.png "
        "and DIR/ranks.png. Re-running the same command resumes an interrupted sweep.",
        epilog="example:\n  lite-whisper sweep tiny.en --thresholds 0.999,0.99:0.999,0.99,0.95:0.99,0.95,0.9 -o sweeps/tiny.en",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help=model_help)
    p.add_argument("-o", "--output", type=Path, required=True, help="sweep folder (created, or resumed if it exists)")
    p.add_argument("--thresholds", required=True, help="comma-separated thresholds, each T or ATTN:MLP")
    p.add_argument("--calibration", default=str(default_speech_dir() / "splits" / "calibration.txt"),
                   help="calibration dataset spec (default: the shared calibration split)")
    p.add_argument("--data", default=str(dev_split), help="evaluation dataset spec (default: the shared dev split)")
    p.add_argument("--limit", type=int, help="use only the first N calibration clips")
    p.add_argument("--eval-limit", type=int, help="evaluate only the first N clips")
    p.add_argument("--batch-size", type=int, default=8, help="clips per batch for calibration and decoding")
    p.add_argument("--max-new-tokens", type=int, help=(
        "stop each transcript after N tokens (default: Whisper's 448-token limit); "
        "bounds the time a badly compressed model spends repeating itself; keep it the same when resuming"))
    p.add_argument("--no-bench", action="store_true", help="skip encoder timing (WER and size only)")
    p.add_argument("--repeats", type=int, default=5, help="timed encoder runs per model (default: 5)")
    p.add_argument("--heatmap", help="threshold whose ranks go into ranks.png (default: the first one)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(run=run_sweep)

    from lite_whisper.cli_bench import add_bench_command

    add_bench_command(commands, model_help)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_transformers()
    try:
        return args.run(args) or 0
    except (CLIError, ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"lite-whisper {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _quiet_transformers() -> None:
    """transformers warns on every Whisper generate call (attention mask of fixed 30 s inputs,
    deprecated argument styles); those say nothing a user can act on."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()  # per-file load/save bars of local folders; ours show the long work


def _decoding_options(args):
    from lite_whisper.inference.transcribe import DecodingOptions

    language = None if args.language in (None, "none", "auto") else args.language
    _positive(args.max_new_tokens, "--max-new-tokens")
    return DecodingOptions(language=language, task=args.task, beam_size=args.beam_size,
                           timestamps=getattr(args, "timestamps", False), max_new_tokens=args.max_new_tokens)


def _positive(value: int | None, what: str) -> None:
    if value is not None and value < 1:
        raise CLIError(f"{what} must be at least 1, got {value}")


def run_transcribe(args) -> int:
    from lite_whisper.inference.transcribe import transcribe
    from lite_whisper.models.loading import load_model

    _positive(args.batch_size, "--batch-size")
    options = _decoding_options(args)
    for path in args.files:  # fail before loading the model
        if not path.exists():
            raise CLIError(f"{path}: audio file not found")
    model, processor = load_model(args.model, dtype=args.dtype, device=args.device)
    results = transcribe((model, processor), args.files, batch_size=args.batch_size, options=options)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return 0
    for result in results:
        if len(results) > 1:
            print(f"== {result.source}")
        if args.timestamps and result.segments:
            for segment in result.segments:
                print(f"[{segment.start:7.2f} -> {segment.end:7.2f}] {segment.text}")
        else:
            print(result.text)
    return 0


def run_eval(args) -> int:
    from lite_whisper.data.datasets import load_dataset
    from lite_whisper.evaluation.evaluate import evaluate
    from lite_whisper.models.loading import load_model

    _positive(args.limit, "--limit")
    _positive(args.batch_size, "--batch-size")
    if args.output is not None and args.output.is_dir():
        raise CLIError(f"--output {args.output} is a folder; give a file name such as result.json")
    options = _decoding_options(args)
    dataset = load_dataset(args.data, limit=args.limit)
    model, processor = load_model(args.model, dtype=args.dtype, device=args.device)
    result = evaluate((model, processor), dataset, batch_size=args.batch_size,
                      options=options, progress=not args.no_progress)
    result.model = args.model
    print(result.table())
    if args.output is not None:
        result.save(args.output)
        print(f"wrote {args.output}")
    return 0


def run_compress(args) -> int:
    from lite_whisper.compression.compress import CompressionConfig, calibrate, compress
    from lite_whisper.compression.report import REPORT_FILE
    from lite_whisper.compression.statistics import CalibrationStatistics
    from lite_whisper.lowrank.checkpoint import save_lite_whisper
    from lite_whisper.models.loading import resolve_dtype

    # Validate everything cheap before the expensive part.
    config = CompressionConfig.parse(args.threshold, rank_multiple=args.rank_multiple)
    _positive(args.limit, "--limit")
    _positive(args.batch_size, "--batch-size")
    if args.output.exists() and not args.overwrite:
        raise CLIError(f"{args.output}: already exists; choose another output folder or pass --overwrite")
    stats_files = args.stats or []
    existing = [path for path in stats_files if path.exists()]
    if len(stats_files) > 1 and len(existing) < len(stats_files):
        missing = ", ".join(str(p) for p in stats_files if not p.exists())
        raise CLIError(f"--stats given several times merges existing files, but these do not exist: {missing}")

    import dataclasses
    import time

    from lite_whisper.models.loading import load_model

    start = time.perf_counter()
    model, processor = load_model(args.model, dtype="float32", device=args.device)
    if existing:
        statistics = CalibrationStatistics.load(existing[0])
        for path in existing[1:]:
            statistics = statistics.merge(CalibrationStatistics.load(path))
        calibration_data = ", ".join(str(p) for p in existing)
        print(f"loaded statistics of {statistics.calibration_clips} clips from {calibration_data}", file=sys.stderr)
    else:
        statistics = calibrate(model, processor, args.calibration, limit=args.limit, batch_size=args.batch_size,
                               exclude_padding=args.exclude_padding, progress=not args.no_progress,
                               model_name=args.model)
        calibration_data = args.calibration
        if stats_files:
            statistics.save(stats_files[0])
            print(f"wrote statistics to {stats_files[0]}", file=sys.stderr)
    lite, report = compress(model, statistics, config, model_name=args.model, calibration_data=calibration_data)
    # the report's wall time covers the whole job: loading, calibration and factorisation
    report = dataclasses.replace(report, wall_seconds=time.perf_counter() - start)
    save_lite_whisper(lite, processor, args.output, dtype=resolve_dtype(args.dtype), overwrite=args.overwrite,
                      extra_files={REPORT_FILE: json.dumps(report.to_dict(), indent=2) + "\n"})
    print(report.table())
    print(f"wrote {args.output}")
    if args.evaluate:
        _compare(args, (model, processor), args.output)
    return 0


def _compare(args, dense, compressed_folder: Path) -> None:
    """Evaluate the dense and the compressed model on the same data and print them side by side."""
    from lite_whisper.data.datasets import load_dataset
    from lite_whisper.evaluation.cost import encoder_flops, encoder_params
    from lite_whisper.evaluation.evaluate import evaluate
    from lite_whisper.inference.transcribe import DecodingOptions
    from lite_whisper.models.loading import load_model

    compressed = load_model(compressed_folder, dtype="float32", device=args.device)
    options = DecodingOptions(language="en")
    rows = []
    for name, pair in (("dense", dense), ("compressed", compressed)):
        dataset = load_dataset(args.data, limit=args.eval_limit)
        result = evaluate(pair, dataset, options=options, progress=not args.no_progress)
        rows.append((name, encoder_params(pair[0]), encoder_flops(pair[0]), result))
    print(f"\nevaluated on {args.data} ({rows[0][3].clips} clips, {rows[0][3].words} words)")
    print(f"{'model':<11} {'enc. params':>12} {'enc. GFLOPs':>12} {'WER %':>7} {'mean utt. WER %':>16} {'RTFx':>6}")
    for name, params, flops, result in rows:
        print(f"{name:<11} {params / 1e6:>11.2f}M {flops / 1e9:>12.2f} {result.wer:>7.2f} "
              f"{result.mean_utterance_wer:>16.2f} {result.rtfx:>6.1f}")


def run_sweep(args) -> int:
    from lite_whisper.benchmark.sweep import sweep

    _positive(args.limit, "--limit")
    _positive(args.eval_limit, "--eval-limit")
    _positive(args.repeats, "--repeats")
    _positive(args.max_new_tokens, "--max-new-tokens")
    from lite_whisper.inference.transcribe import DecodingOptions

    options = DecodingOptions(language="en", max_new_tokens=args.max_new_tokens)
    thresholds = [t.strip() for t in args.thresholds.split(",") if t.strip()]
    points = sweep(args.model, args.calibration, args.data, thresholds, args.output, limit=args.limit,
                   eval_limit=args.eval_limit, batch_size=args.batch_size, bench=not args.no_bench, options=options,
                   repeats=args.repeats, heatmap=args.heatmap, progress=not args.no_progress,
                   log=lambda message: print(message, file=sys.stderr, flush=True))
    print(f"{'setting':<12} {'enc. params':>12} {'enc. GFLOPs':>12} {'WER %':>7} {'mean utt. %':>12} "
          f"{'latency ms':>11} {'speedup':>8}  Pareto")
    for p in points:
        latency = f"{p.latency_ms:11.1f}" if p.latency_ms is not None else f"{'-':>11}"
        speedup = f"{p.speedup:8.2f}" if p.speedup is not None else f"{'-':>8}"
        front = ",".join(name for name, flag in (("size", p.pareto_params), ("latency", p.pareto_latency)) if flag)
        print(f"{p.label:<12} {p.encoder_params / 1e6:>11.2f}M {p.encoder_flops / 1e9:>12.2f} {p.wer:>7.2f} "
              f"{p.mean_utterance_wer:>12.2f} {latency} {speedup}  {front}")
    print(f"wrote {args.output / 'pareto.json'}, {args.output / 'pareto.png'}, {args.output / 'ranks.png'}")
    return 0


def run_inspect(args) -> int:
    from lite_whisper.compression.report import REPORT_FILE, CompressionReport, structural_report
    from lite_whisper.models.loading import load_model

    saved = Path(args.model) / REPORT_FILE
    if saved.exists():
        report = CompressionReport.load(saved)
    else:
        model, _ = load_model(args.model)
        report = structural_report(model, model_name=args.model)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())
    return 0


def run_convert(args) -> int:
    from lite_whisper.models.loading import load_model, save_model

    model, processor = load_model(args.source, dtype=args.dtype)
    save_model(model, processor, args.output, overwrite=args.overwrite)
    print(f"wrote {args.output} ({type(model).__name__}, {args.dtype})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
