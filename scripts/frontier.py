"""Where compressing a bigger Whisper beats picking a smaller one: the accuracy/speed frontier.

Every point is built with the commands users run and deployed as they deploy it:
`lite-whisper compress MODEL --target-params F` (the default recipe; /dN sets --distill-steps N),
`lite-whisper export ... --int8`, `lite-whisper eval EXPORT --encoder int8` on the clean dev split and on
each folder of a `lite-whisper variants` root (the default decoding: greedy, the early-end recovery on).
Then all the exports transcribe the same clean clips taking turns (`benchmark.harness`), for the
end-to-end speed the same engine reaches. Writes OUT/frontier.json, OUT/frontier.md (a table) and
OUT/frontier.png (two panels: clean WER and the variants' geometric-mean WER against RTFx).

Everything is cached under OUT (statistics per model, model folders, exports, one JSON per
evaluation), so a re-run with more points does only the new work; the speed is measured again
whenever the set of points changes (contenders are only comparable when timed together).

    python scripts/frontier.py -o runs/frontier --variants ~/speech-variants/dev \
        --point tiny.en --point tiny.en@0.75 --point tiny.en@0.6 \
        --point base --point base@0.9 --point base@0.75 --point base@0.6 --point base@0.5 \
        --point base@0.6/d128
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from lite_whisper.data.datasets import default_speech_dir
from lite_whisper.experiments.frontier import CLEAN, FrontierPoint, plot_frontier, summarise, table, with_ratios


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, required=True, help="the frontier's folder (resumed if it exists)")
    parser.add_argument("--point", action="append", default=[], required=True,
                        help="MODEL, MODEL@FRACTION or MODEL@FRACTION/dSTEPS; give it once per point")
    parser.add_argument("--data", default=None, help="the clean evaluation set (default: the shared dev split)")
    parser.add_argument("--variants", type=Path, help="a `lite-whisper variants` root: every folder is evaluated too")
    parser.add_argument("--only", help="comma-separated variant names (default: every folder of --variants)")
    parser.add_argument("--eval-limit", type=int, help="evaluate only the first N clips of each set")
    parser.add_argument("--encoder", default="int8", choices=["int8", "bfloat16", "float32"],
                        help="the exports' encoder for evaluation and timing (default: int8, what every CPU runs; "
                        "bfloat16 where OpenVINO and the CPU have it): results kept apart per encoder")
    parser.add_argument("--threads", type=int, default=2, help="threads for every command and the timing (default: 2)")
    parser.add_argument("--speed-clips", type=int, default=64,
                        help="clean clips the timing transcribes (default: 64; 24 left differences of 10-15%% "
                        "unresolved, docs/RESULTS.md §19)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per batch in the timing (default: 8)")
    parser.add_argument("--build-only", action="store_true", help="compress, export and evaluate; no timing, no plot")
    args = parser.parse_args()

    try:
        points = [FrontierPoint.parse(text) for text in args.point]
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    data = args.data or str(default_speech_dir() / "splits" / "dev.txt")
    datasets = [(CLEAN, data)]
    if args.variants is not None:
        from lite_whisper.data.variants import is_variants_root, variant_folders
        if not is_variants_root(args.variants):
            print(f"error: {args.variants}: not a `lite-whisper variants` folder", file=sys.stderr)
            return 2
        only = set(args.only.split(",")) if args.only else None
        datasets += [(name, str(folder)) for name, folder in variant_folders(args.variants)
                     if only is None or name in only]
    out = args.output
    evaluations = out / ("eval" if args.encoder == "int8" else f"eval-{args.encoder}")
    for folder in (out / "stats", out / "models", out / "exports", evaluations):
        folder.mkdir(parents=True, exist_ok=True)
    threads = ["--threads", str(args.threads)]

    rows = []
    for point in points:
        source = point.model
        if not point.dense:
            model_folder = out / "models" / point.label
            if not (model_folder / "config.json").exists():
                seconds = _run(["compress", point.model, *point.compress_arguments(), "--stats",
                                str(out / "stats" / f"{point.model_label}.stats"), "-o", str(model_folder),
                                *threads, "--no-progress", *(["--overwrite"] if model_folder.exists() else [])])
                (model_folder / "frontier_seconds.txt").write_text(f"{seconds:.1f}\n")
            source = str(model_folder)
        export_folder = out / "exports" / point.label
        if not (export_folder / "lite_whisper_export.json").exists():
            _run(["export", source, "-o", str(export_folder), "--int8", *threads,
                  *(["--overwrite"] if export_folder.exists() else [])])
        wers = {}
        for name, spec in datasets:
            result = evaluations / point.label / f"{name}.json"
            if not result.exists():
                result.parent.mkdir(parents=True, exist_ok=True)
                _run(["eval", str(export_folder), "--data", spec, "--encoder", args.encoder, *threads, "--no-progress",
                      "--output", str(result), *(["--limit", str(args.eval_limit)] if args.eval_limit else [])])
            wers[name] = json.loads(result.read_text())["wer"]
        rows.append((point, wers))
    if args.build_only:
        return 0

    speed = measure_speed(out, [point for point, _ in rows], data, args)
    summary = with_ratios([summarise(point, wers, speed["rtfx"].get(point.label, {})) for point, wers in rows])
    speed_key = f"b{args.batch_size}"
    stem = out / ("frontier" if args.encoder == "int8" else f"frontier-{args.encoder}")
    Path(f"{stem}.json").write_text(json.dumps({"points": summary, "speed": speed, "encoder": args.encoder,
                                                "datasets": [name for name, _ in datasets]}, indent=2) + "\n")
    text = table(summary, speed_key)
    Path(f"{stem}.md").write_text(text + "\n")
    print(text)
    cpu = speed["environment"].get("cpu", "")
    plot_frontier(summary, f"{stem}.png", speed_key,
                  title=f"exports, {args.encoder} encoder, {args.threads} threads{', ' + cpu if cpu else ''}; "
                        f"WER on {args.eval_limit or 'all'} clips per set")
    print(f"wrote {stem}.json, {stem}.md, {stem}.png")
    return 0


def measure_speed(out: Path, points: list[FrontierPoint], data: str, args) -> dict:
    """Every export transcribes the same clean clips, taking turns; cached while the points stay the same."""
    from lite_whisper.benchmark.environment import environment
    from lite_whisper.benchmark.harness import Contender, run_interleaved
    from lite_whisper.data.audio import SAMPLE_RATE
    from lite_whisper.data.datasets import load_dataset
    from lite_whisper.runtime.exported import ExportedWhisper
    from lite_whisper.transcription.engine import transcribe_clips
    from lite_whisper.transcription.types import DecodingOptions

    key = {"labels": sorted(point.label for point in points), "clips": args.speed_clips, "threads": args.threads,
           "batch_size": args.batch_size, "data": data, "encoder": args.encoder}
    cache = out / ("speed.json" if args.encoder == "int8" else f"speed-{args.encoder}.json")
    if cache.exists() and json.loads(cache.read_text()).get("key") == key:
        return json.loads(cache.read_text())
    clips = [(clip.id, clip.audio) for clip in load_dataset(data, limit=args.speed_clips)]
    audio_seconds = sum(len(audio) for _, audio in clips) / SAMPLE_RATE
    options = DecodingOptions(language="en")
    contenders = []
    for point in points:
        engine = ExportedWhisper(out / "exports" / point.label, encoder=args.encoder, threads=args.threads)
        for size in sorted({1, args.batch_size}):
            contenders.append(Contender(f"{point.label} b{size}", lambda items, engine=engine, size=size: [
                t.text for t in transcribe_clips(engine, items, batch_size=size, options=options)]))
    print(f"timing {len(contenders)} contenders on {len(clips)} clips ({audio_seconds:.0f} s of audio), taking turns ...",
          file=sys.stderr)
    timings = run_interleaved(contenders, clips, chunk_size=args.batch_size,
                              log=lambda message: print(message, file=sys.stderr))
    rtfx: dict[str, dict[str, float]] = {}
    failures = {}
    for timing in timings:
        label, size = timing.name.rsplit(" ", 1)
        if timing.failed:
            failures[timing.name] = timing.failure
        else:
            rtfx.setdefault(label, {})[size] = audio_seconds / timing.wall_seconds
    speed = {"key": key, "audio_seconds": audio_seconds, "rtfx": rtfx, "failures": failures,
             "environment": environment()}
    cache.write_text(json.dumps(speed, indent=2) + "\n")
    return speed


def _run(arguments: list[str]) -> float:
    """One lite-whisper command, as a user types it; its output goes to the terminal; its time returned."""
    command = [sys.executable, "-m", "lite_whisper", *arguments]
    print("$ lite-whisper " + " ".join(arguments), file=sys.stderr, flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
