"""`lite-whisper bench`: three measurements, each a function with its own validation.

    latency            the encoder against a dense baseline (and, with --data, end to end)
    calibration cost   (--calibration-cost) calibration passes against plain encoder passes
    faster-whisper     (--against faster-whisper) an exported folder end to end against faster-whisper

Which options each takes is one table (`TAKES`); an option given to a mode that does not take it
is refused by name before anything loads.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from lite_whisper.cli.common import (
    DTYPES,
    MODEL_HELP,
    CLIError,
    check_device,
    check_output_file,
    default_dtype,
    positive,
)
from lite_whisper.models.architectures import ARCHITECTURES
from lite_whisper.runtime.encoders import ENCODER_KINDS

RECOMMENDED_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967296:glibc.malloc.arena_max=1"

EPILOG = f"""examples:
  lite-whisper bench base-0.95                      # baseline: the model it was compressed from
  lite-whisper bench base-0.95 --baseline base --batch-size 1,4 --threads 2 --output bench.json
  lite-whisper bench base-0.95 --data ../shared/speech/splits/dev.txt --limit 16   # + end to end
  lite-whisper bench --random-weights large-v3 --rank-fraction 0.5 --repeats 3
  lite-whisper bench --random-weights large-v3 --calibration-cost --batch-size 2   # what the moments cost
  lite-whisper bench tiny.en-lite-export --against faster-whisper --data ../shared/speech/splits/dev.txt --threads 2
  lite-whisper bench --random-weights large-v3 --rank-fraction 0.6 --device cuda --batch-size 1,8,32

On CUDA (float16 unless --dtype says otherwise) passes are timed with CUDA events, the garbage
collector off, warm-up continuing until the last 3 passes agree within 5%, and both encoders are
timed twice: eager (every kernel launched from Python) and replayed from a CUDA graph per batch
size, the way lite-whisper's engines run them there.

The model, the dense baseline as users run it (stock transformers) and, when the model runs
on lite-whisper's fast CPU kernels, the same baseline on those kernels run interleaved
(A B C A B C ...) in one process after warm-up. Two ratios, baseline median / model median
with the range of the per-pair ratios: "vs baseline" (what a user gains) and "vs same
kernels" (what the compression alone buys). FLOP eff. = the same-kernel speedup / the
speedup the encoders' FLOPs predict.

CPU timings depend on glibc's allocator: by default it hands big buffers back to the
OS after every call and page-faults them in again on the next. For steadier, faster
numbers start the process with
  GLIBC_TUNABLES={RECOMMENDED_TUNABLES}
(the JSON records the value used).
"""

LATENCY, CALIBRATION_COST, AGAINST = "latency", "calibration cost", "faster-whisper"
MODE_FLAGS = {LATENCY: "the encoder latency bench", CALIBRATION_COST: "--calibration-cost",
              AGAINST: "--against faster-whisper"}

# option destination -> (flag, the modes that take it). Options every mode takes are not listed.
TAKES = {
    "baseline": ("--baseline", {LATENCY, AGAINST}),
    "random_weights": ("--random-weights", {LATENCY, CALIBRATION_COST}),
    "rank_fraction": ("--rank-fraction", {LATENCY}),
    "batch_size": ("--batch-size", {LATENCY, CALIBRATION_COST}),
    "data": ("--data", {LATENCY, AGAINST}),
    "limit": ("--limit", {LATENCY, AGAINST}),
    "decode_batch_size": ("--decode-batch-size", {LATENCY, AGAINST}),
    "max_new_tokens": ("--max-new-tokens", {LATENCY}),
    "encoder": ("--encoder", {AGAINST}),
    "device": ("--device", {LATENCY, CALIBRATION_COST}),
    "dtype": ("--dtype", {LATENCY, CALIBRATION_COST}),
}


def add_parser(commands) -> None:
    p = commands.add_parser(
        "bench", help="time the encoder against a baseline (and, with --data, end to end)",
        description="Time the encoder of MODEL on 30 s inputs against a baseline in the same process; report "
        "latency, speedup, the FLOP-predicted speedup, parameters, weight bytes and peak memory. With "
        "--random-weights, time random models of a real architecture instead (no download).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", nargs="?", help=f"the model to time: {MODEL_HELP} (omit with --random-weights)")
    p.add_argument(
        "--baseline",
        help="the model to compare with (default: the model a lite-whisper folder was compressed from, "
        "as named in its compression report; 'none' = no comparison)",
    )
    p.add_argument("--batch-size", help="comma-separated batch sizes, e.g. 1,4 (default: 1)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--repeats", type=int, help="timed runs per model and batch size (default: 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per model first (default: 1)")
    p.add_argument("--random-weights", metavar="ARCH",
                   help=f"time a random model of this architecture ({', '.join(ARCHITECTURES)}) against the dense one")
    p.add_argument("--rank-fraction", type=float,
                   help="with --random-weights: every encoder linear at this fraction of its break-even rank, "
                   "0 < F < 1 (default: 0.5)")
    p.add_argument("--data", help="also transcribe this dataset with both models: RTFx and encoder share")
    p.add_argument("--limit", type=int, help="with --data: transcribe the first N clips (default: 8)")
    p.add_argument("--decode-batch-size", type=int, help="with --data: clips per generate call (default: 8)")
    p.add_argument("--max-new-tokens", type=int,
                   help="with --data: stop each transcript after N tokens (a model that babbles otherwise "
                   "decodes to Whisper's 448-token limit)")
    p.add_argument("--calibration-cost", action="store_true",
                   help="instead: time calibration passes (hooks + float64 moments) of the dense MODEL against "
                   "plain encoder passes over the same batch; reports the throughput fraction")
    p.add_argument("--against", choices=["faster-whisper"],
                   help="instead: transcribe --data end to end with an exported MODEL (lite-whisper export) and "
                   "with faster-whisper (int8, sequential and batched) on the dense source model (or --baseline); "
                   "RTFx, WER and encoder-only latency of each engine")
    p.add_argument("--encoder", choices=ENCODER_KINDS,
                   help="with --against: the export's encoder that transcribes (default: auto, see lite-whisper "
                   "transcribe --help); every one this machine can run is timed alone either way")
    p.add_argument("--output", type=Path, help="write the result as JSON")
    p.add_argument("--record", action="store_true",
                   help="MODEL is a folder: add the encoder speed-up over the baseline (each batch size), with this "
                   "command and the CPU, to its lite_whisper_results.json and its model card (README.md)")
    p.add_argument("--device", help="torch device: cpu, cuda, cuda:N or mps (default: cpu)")
    p.add_argument("--dtype", choices=DTYPES, help="compute dtype (default: float16 on CUDA, else float32)")
    p.set_defaults(run=run)


def parse_batch_sizes(text: str | None) -> tuple[int, ...]:
    parts = [part.strip() for part in ("1" if text is None else str(text)).split(",")]
    try:
        sizes = tuple(int(part) for part in parts)
    except ValueError:
        raise CLIError(f"--batch-size takes comma-separated positive integers such as 1,4, got {text!r}") from None
    if not sizes or any(size < 1 for size in sizes):
        raise CLIError(f"--batch-size takes comma-separated positive integers such as 1,4, got {text!r}")
    return tuple(dict.fromkeys(sizes))  # drop repeats, keep order


def mode_of(args) -> str:
    if args.calibration_cost and args.against is not None:
        raise CLIError("--calibration-cost and --against are two different measurements; give one")
    return CALIBRATION_COST if args.calibration_cost else AGAINST if args.against is not None else LATENCY


def check_options(args, mode: str) -> None:
    """What every mode checks: no option it does not take, positive counts, a writable --output."""
    for dest, (flag, modes) in TAKES.items():
        if getattr(args, dest) is not None and mode not in modes:
            if modes == {AGAINST}:
                raise CLIError(f"{flag} only applies with --against faster-whisper (an exported MODEL folder)")
            raise CLIError(f"{flag} does not apply with {MODE_FLAGS[mode]}")
    for value, flag in ((args.repeats, "--repeats"), (args.threads, "--threads"), (args.limit, "--limit"),
                        (args.decode_batch_size, "--decode-batch-size"), (args.max_new_tokens, "--max-new-tokens")):
        positive(value, flag)
    if args.warmup < 0:
        raise CLIError(f"--warmup must be 0 or more, got {args.warmup}")
    check_output_file(args.output, "bench.json")
    if args.record and (mode != LATENCY or args.model is None or not Path(args.model).is_dir()):
        raise CLIError("--record writes the encoder speed-up into the model's folder: give a MODEL folder, "
                       "without --calibration-cost, --against or --random-weights")


def run(args) -> int:
    mode = mode_of(args)
    check_options(args, mode)
    return {LATENCY: latency, CALIBRATION_COST: calibration_cost, AGAINST: against_faster_whisper}[mode](args)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def allocator_note() -> None:
    """Said once the arguments are known to be good, before timing starts."""
    if not os.environ.get("GLIBC_TUNABLES"):
        log("note: GLIBC_TUNABLES is unset; see `lite-whisper bench --help` for allocator settings "
            "that make CPU timings steadier")


def _model_or_random(args) -> None:
    if args.random_weights is None:
        if args.model is None:
            raise CLIError("give a MODEL to time, or --random-weights ARCH")
        return
    if args.random_weights not in ARCHITECTURES:
        raise CLIError(f"--random-weights: unknown architecture {args.random_weights!r}; "
                       f"choose one of {', '.join(ARCHITECTURES)}")
    if args.model is not None:
        log(f"note: --random-weights given, ignoring MODEL {args.model}")
        args.model = None


def latency(args) -> int:
    """The encoder of MODEL (or a random model) against its dense baseline; end to end with --data."""
    _model_or_random(args)
    batch_sizes = parse_batch_sizes(args.batch_size)
    device = check_device(args.device or "cpu")
    dtype = args.dtype or default_dtype(device)
    if args.random_weights is not None:
        if args.rank_fraction is not None and not 0.0 < args.rank_fraction < 1.0:
            raise CLIError(f"--rank-fraction must be between 0 and 1 (exclusive), got {args.rank_fraction}")
        for given, flag in ((args.data, "--data"), (args.baseline, "--baseline")):
            if given is not None:
                raise CLIError(f"{flag} cannot be used with --random-weights: the baseline is the dense random model "
                               "and random weights transcribe nothing")
    elif args.rank_fraction is not None:
        raise CLIError("--rank-fraction only applies with --random-weights")
    for value, flag in ((args.limit, "--limit"), (args.max_new_tokens, "--max-new-tokens"),
                        (args.decode_batch_size, "--decode-batch-size")):
        if value is not None and args.data is None:
            raise CLIError(f"{flag} only applies with --data")

    allocator_note()
    # The heavy stack loads only now that the arguments are known to be good (help and errors stay fast).
    from lite_whisper.api import load_model
    from lite_whisper.benchmark.bench import benchmark
    from lite_whisper.models.loading import resolve_dtype
    from lite_whisper.models.random import random_model
    from lite_whisper.runtime.pytorch import prepare_for_inference
    from lite_whisper.transcription.types import DecodingOptions

    processor = baseline_processor = None
    if args.random_weights is not None:
        fraction = 0.5 if args.rank_fraction is None else args.rank_fraction
        log(f"building random {args.random_weights} models (dense and at {fraction:g} x break-even rank)")
        model = prepare_for_inference(random_model(args.random_weights, fraction, dtype=resolve_dtype(dtype),
                                                   device=device))
        baseline = random_model(args.random_weights, None, dtype=resolve_dtype(dtype), device=device)
        names = (f"random {args.random_weights} @ {fraction:g} x break-even rank", f"random {args.random_weights} dense")
        sources = (None, None)
    else:
        baseline_spec = args.baseline if args.baseline is not None else default_baseline(args.model)
        if baseline_spec in ("none", ""):
            baseline_spec = None
        model, processor = load_model(args.model, dtype=dtype, device=device)
        baseline = None
        if baseline_spec is not None:
            baseline, baseline_processor = load_model(baseline_spec, dtype=dtype, device=device)
        else:
            log("no baseline (give --baseline MODEL): timing the model alone")
        names = sources = (args.model, baseline_spec)
    result = benchmark(
        model, baseline,
        batch_sizes=batch_sizes, repeats=args.repeats or 5, warmup=args.warmup, threads=args.threads,
        model_name=names[0], baseline_name=names[1], model_source=sources[0], baseline_source=sources[1],
        data=args.data, processor=processor, baseline_processor=baseline_processor,
        limit=(args.limit or 8) if args.data is not None else None, decode_batch_size=args.decode_batch_size or 8,
        options=DecodingOptions(language="en", max_new_tokens=args.max_new_tokens), log=log,
    )
    print(result.table())
    if args.output is not None:
        result.save(args.output)
        print(f"wrote {args.output}")
    if args.record:
        _record(args, result)
    return 0


def _record(args, result) -> None:
    """The encoder speed-ups of `result` into the model folder's results and card."""
    from lite_whisper.models.model_card import RESULTS_FILE, record_results

    env = result.environment
    entries = [{"measure": f"encoder speed-up vs {result.baseline.name}, batch {r.batch_size}",
                "on": f"{env['cpu']}, {env['threads']} threads",
                "value": f"{r.speedup.median:.2f}x ({r.model_ms.median:.0f} vs {r.baseline_ms.median:.0f} ms; "
                         f"FLOPs predict {result.flops_speedup:.2f}x)",
                "command": shlex.join(args.command_line)} for r in result.results if r.speedup is not None]
    if entries:
        record_results(args.model, entries)
        print(f"recorded in {Path(args.model) / RESULTS_FILE} and the folder's model card")


def default_baseline(model_spec: str) -> str | None:
    """The model a lite-whisper folder was compressed from, as its compression report names it."""
    from lite_whisper.compression.report import REPORT_FILE, CompressionReport

    report = Path(model_spec) / REPORT_FILE
    if not report.is_file():
        return None
    try:
        return CompressionReport.load(report).model or None
    except (OSError, ValueError, TypeError, KeyError):
        return None


def calibration_cost(args) -> int:
    """Calibration passes of the dense MODEL (or random model) against plain encoder passes."""
    _model_or_random(args)
    batch_sizes = parse_batch_sizes(args.batch_size)
    device = check_device(args.device or "cpu")
    dtype = args.dtype or default_dtype(device)

    allocator_note()
    import torch  # the heavy stack, now that the arguments are known to be good

    from lite_whisper.benchmark.calibration_speed import calibration_speed
    from lite_whisper.benchmark.environment import environment
    from lite_whisper.compression.compress import check_dense
    from lite_whisper.files import write_json_atomic
    from lite_whisper.models.loading import load_pytorch_model, resolve_dtype
    from lite_whisper.models.random import random_model

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.random_weights is not None:
        model = random_model(args.random_weights, None, dtype=resolve_dtype(dtype), device=device)
        name = f"random {args.random_weights} dense"
    else:
        model, _ = load_pytorch_model(args.model, dtype=dtype, device=device)
        check_dense(model, args.model)
        name = args.model
    repeats = args.repeats or 5
    results = []
    for batch_size in batch_sizes:
        log(f"timing {repeats} calibration and plain encoder passes at batch {batch_size} ...")
        result = calibration_speed(model, batch_size, repeats=repeats, warmup=args.warmup)
        print(result.table())
        results.append(result.to_dict())
    if args.output is not None:
        write_json_atomic(args.output, {"kind": "calibration-cost", "model": name, "results": results,
                                        "environment": environment()})
        print(f"wrote {args.output}")
    return 0


def against_faster_whisper(args) -> int:
    """An exported MODEL folder end to end against faster-whisper on its dense source model."""
    from lite_whisper.export_manifest import is_exported_folder, read_manifest

    if args.model is None or not is_exported_folder(args.model):
        raise CLIError(f"{args.model}: not an exported folder; run `lite-whisper export {args.model} -o DIR` first"
                       if args.model else "--against faster-whisper times an exported MODEL folder (lite-whisper export)")
    from lite_whisper.cli.common import open_dataset
    from lite_whisper.runtime.encoders import choose_encoder

    manifest = read_manifest(args.model)
    encoder = choose_encoder(manifest, args.encoder)  # fails here, before the dense model loads
    dense_spec = args.baseline or default_baseline(manifest["source_model"]) or manifest["source_model"]
    dataset = open_dataset(args.data, args.limit, "evaluation", "dev.txt")

    allocator_note()
    # The heavy stack, now that the arguments are known to be good.
    from lite_whisper.benchmark.deployment import bench_deployment
    from lite_whisper.files import write_json_atomic
    from lite_whisper.lowrank.cost import has_low_rank
    from lite_whisper.models.loading import load_pytorch_model

    dense, processor = load_pytorch_model(dense_spec, dtype="float32")
    if has_low_rank(dense):
        raise CLIError(f"{dense_spec} is compressed; give the dense model faster-whisper should run as --baseline")
    result = bench_deployment(args.model, dense, processor, dataset, dense_name=dense_spec,
                              batch_size=args.decode_batch_size or 8, threads=args.threads,
                              repeats=args.repeats or 5, encoder=encoder, log=log)
    print(result.table())
    if args.output is not None:
        write_json_atomic(args.output, result.to_dict())
        print(f"wrote {args.output}")
    return 0
