"""End to end on a GPU under the Open ASR Leaderboard's rules: dense vs compressed on the same engine, and
faster-whisper's float16 batched pipeline on the dense model. JSON + table.

Random weights of a real shape (`--arch`, speed only: every clip decodes exactly `--tokens` tokens with
end-of-text suppressed, and no WER), or real weights (`--model`, with `--lite FOLDER` its compressed
version; corpus WER on the clips' transcripts). Contenders (`--contenders`, comma-separated):

  hybrid-dense, hybrid-lite     lite-whisper's GPU engine: PyTorch encoder replayed from CUDA graphs per batch
                                bucket + CTranslate2 float16 decoder (`runtime.hybrid`)
  torch-dense, torch-lite       PyTorch engine: encoder (graphed) + transformers' generate (dynamic cache)
  compiled-dense, compiled-lite the same with transformers' static cache and a torch.compile'd decode step
                                (CUDA graphs; compiles once per batch size: minutes)
  faster-whisper                the dense model converted to CTranslate2 float16, BatchedInferencePipeline

Each engine is made once per contender and kept across batch sizes (its graphs per bucket too).

    python scripts/gpu_benchmark.py --arch large-v3-turbo --rank-fraction 0.6 --batch-sizes 1,8,64 \\
        --clips /path/to/dev --limit 128 --tokens 100 --json turbo-e2e.json
    python scripts/gpu_benchmark.py --model tiny.en --lite tiny.en-lite --clips dev --limit 64 --json tiny-e2e.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from lite_whisper.benchmark.environment import environment, gpu_environment
from lite_whisper.benchmark.leaderboard import (
    WARMUP_BATCHES,
    EngineRunner,
    FasterWhisperRunner,
    as_dicts,
    run_leaderboard,
    table,
)
from lite_whisper.data.datasets import load_dataset
from lite_whisper.transcription.types import DecodingOptions

CONTENDERS = ("hybrid-dense", "hybrid-lite", "torch-dense", "torch-lite", "compiled-dense", "compiled-lite",
              "faster-whisper")
DEFAULT_CONTENDERS = ("hybrid-dense", "hybrid-lite", "torch-dense", "torch-lite", "faster-whisper")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--arch", help="random weights of this shape (large-v3, large-v3-turbo, ...)")
    source.add_argument("--model", help="real dense weights (a spec lite-whisper loads)")
    parser.add_argument("--lite", help="with --model: its compressed folder")
    parser.add_argument("--rank-fraction", type=float, default=0.6, help="with --arch: ranks x break-even (0.6)")
    parser.add_argument("--clips", required=True, help="dataset spec of the audio (dev clips)")
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--batch-sizes", default="1,8,64")
    parser.add_argument("--tokens", type=int, default=100, help="with --arch: tokens decoded per clip (100)")
    parser.add_argument("--warmup-batches", type=int, default=WARMUP_BATCHES)
    parser.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS), help=f"from {', '.join(CONTENDERS)}")
    parser.add_argument("--repeat-to", type=int, help="with --arch: cycle the clips to this many (larger batches)")
    parser.add_argument("--max-batches", type=int, help="time at most this many batches per batch size")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    chosen = [name.strip() for name in args.contenders.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in CONTENDERS]
    if unknown:
        parser.error(f"unknown contenders {unknown}; choose from {', '.join(CONTENDERS)}")
    if args.model and not args.lite and any(name.endswith("-lite") for name in chosen):
        parser.error("--model with a -lite contender needs --lite FOLDER")
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    dtype = getattr(torch, args.dtype)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731

    dataset = list(load_dataset(args.clips, limit=args.limit))
    clips = [clip.audio[:30 * 16000] for clip in dataset]
    references = None if args.arch else [clip.reference for clip in dataset]
    if args.repeat_to and args.arch:  # random weights: the same audio again is as good for timing
        clips = [clips[index % len(clips)] for index in range(args.repeat_to)]
    forced = args.tokens if args.arch else None
    options = (DecodingOptions(language="en", forced_tokens=forced, no_speech_threshold=None) if forced
               else DecodingOptions(language="en"))

    start = time.perf_counter()
    models = load_models(args, dtype, chosen)
    scratch = tempfile.TemporaryDirectory(prefix="lite-whisper-gpu-bench-")

    engines: dict = {}

    def factory(name: str):
        def make(batch_size: int):
            if name == "faster-whisper":
                return faster_whisper(batch_size)
            if name not in engines:
                engines[name] = make_engine(name)
            return EngineRunner(engines[name], options)
        return make

    def make_engine(name: str):
        from lite_whisper.runtime.hybrid import HybridEngine
        from lite_whisper.runtime.pytorch import PyTorchEngine

        kind, variant = name.split("-", 1)
        model, processor = models[variant]
        if kind == "hybrid":
            return HybridEngine(model, processor, name=name)
        return PyTorchEngine(model, processor, name=name, decoder_mode="compiled" if kind == "compiled" else "eager")

    folder = Path(scratch.name) / "faster-whisper"
    if "faster-whisper" in chosen:  # converted up front from a CPU copy: the models' tensors stay where graphs saw them
        from lite_whisper.models.ctranslate2.decoder import convert_to_ctranslate2

        dense, processor = models["dense"]
        convert_to_ctranslate2(copy.deepcopy(dense).float().cpu(), processor, folder, quantization="float16")

    def faster_whisper(batch_size: int):
        on_gpu = args.device.startswith("cuda")
        return FasterWhisperRunner(str(folder), device="cuda" if on_gpu else "cpu",
                                   compute_type="float16" if on_gpu else "float32", options=options,
                                   generation_config=models["dense"][0].generation_config, batch_size=batch_size)

    log(f"models ready in {time.perf_counter() - start:.0f} s")
    runs = run_leaderboard([(name, factory(name)) for name in chosen], clips, references, batch_sizes,
                           forced_tokens=forced, warmup_batches=args.warmup_batches, max_batches=args.max_batches,
                           log=log)
    scratch.cleanup()
    result = {"source": args.arch or args.model, "lite": args.lite, "rank_fraction": args.rank_fraction if args.arch else None,
              "dtype": args.dtype, "forced_tokens": forced,
              "note": ("random weights: every clip decodes exactly forced_tokens tokens with end of text suppressed; "
                       "no WER") if forced else "real weights: corpus WER on the clips' transcripts",
              "warmup_batches": args.warmup_batches, "clips": len(clips), "runs": as_dicts(runs),
              "environment": environment(), "gpu": gpu_environment()}
    print(table(runs))
    print(_ratios(runs))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def load_models(args, dtype: torch.dtype, chosen: list[str]) -> dict:
    """{"dense": (model, processor), "lite": ...} on the device, in `dtype`, for the contenders chosen."""
    from lite_whisper.models.loading import load_pytorch_model
    from lite_whisper.models.random import random_whisper

    wanted = {"lite" if name.endswith("-lite") else "dense" for name in chosen}
    models = {}
    for variant in sorted(wanted):
        if args.arch:
            model, processor = random_whisper(args.arch, args.rank_fraction if variant == "lite" else None)
        else:
            model, processor = load_pytorch_model(args.lite if variant == "lite" else args.model, dtype="float32")
        models[variant] = (model.to(device=args.device, dtype=dtype).eval(), processor)
    return models


def _ratios(runs) -> str:
    """Compressed over dense RTFx on the same engine, and over faster-whisper, per batch size."""
    by = {(run.contender, run.batch_size): run.rtfx for run in runs if run.rtfx}
    lines = []
    for engine in ("hybrid", "torch", "compiled"):
        for (name, batch), rtfx in sorted(by.items()):
            if name == f"{engine}-lite" and (f"{engine}-dense", batch) in by:
                line = f"{engine} batch {batch}: compressed/dense {rtfx / by[(f'{engine}-dense', batch)]:.2f}x"
                if ("faster-whisper", batch) in by:
                    line += f", compressed/faster-whisper {rtfx / by[('faster-whisper', batch)]:.2f}x"
                lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
