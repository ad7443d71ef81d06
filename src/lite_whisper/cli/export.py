"""`lite-whisper export`: a folder for ONNX Runtime / OpenVINO (encoder) + CTranslate2 (decoder), or optimum's
ONNX layout (optimum, transformers.js); parity-checked either way."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lite_whisper.cli.common import MODEL_HELP, CLIError, open_dataset, positive
from lite_whisper.models.architectures import ARCHITECTURES

EPILOG = """examples:
  lite-whisper export runs/tiny.en-lite -o tiny.en-lite-export --int8
  lite-whisper export tiny.en -o tiny.en-export --int8            # the dense model: the honest baseline
  lite-whisper eval tiny.en-lite-export --data ../shared/speech/splits/dev.txt
  lite-whisper transcribe tiny.en-lite-export talk.flac
  lite-whisper export efficient-speech/lite-whisper-large-v3-turbo -o lwt-export --int8   # the authors' checkpoints
  lite-whisper export --random-weights large-v3-turbo --rank-fraction 0.6 -o turbo-60-export --int8  # timing only

The layout optimum and transformers.js read (float32 and int8 "q8" ONNX; see the folder's README.md):
  lite-whisper export runs/tiny.en-lite -o tiny.en-lite-onnx --format optimum

In Python, with faster-whisper's pipeline (VAD, timestamps, batching) around the export:
  from lite_whisper.runtime.faster_whisper import LiteWhisperModel
  segments, info = LiteWhisperModel("tiny.en-lite-export", cpu_threads=2).transcribe("talk.flac", beam_size=1)
"""


def add_parser(commands) -> None:
    p = commands.add_parser(
        "export", help="export for the fast CPU deployment: encoder for OpenVINO / ONNX Runtime, decoder for CTranslate2",
        description="Export the encoder of MODEL (dense or compressed) to ONNX (run by ONNX Runtime, or by OpenVINO "
        "in bfloat16 on CPUs that have it), its decoder to CTranslate2 (int8), "
        "check parity with the PyTorch model and write one folder that lite-whisper, and faster-whisper through "
        "lite_whisper.runtime.faster_whisper, can run.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", nargs="?", help=f"{MODEL_HELP} (omit with --random-weights)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (must not exist unless --overwrite)")
    p.add_argument("--format", default="lite-whisper", choices=["lite-whisper", "optimum"],
                   help="lite-whisper (default): ONNX encoder + CTranslate2 decoder, run by lite-whisper and "
                   "faster-whisper; optimum: onnx/encoder_model.onnx + onnx/decoder_model_merged.onnx and their int8 "
                   "*_quantized.onnx, the layout optimum's ORTModelForSpeechSeq2Seq and transformers.js load")
    p.add_argument("--random-weights", metavar="ARCH", choices=sorted(ARCHITECTURES),
                   help="export a model of this architecture with random weights instead (%(choices)s): for time and "
                   "memory measurements only, its text means nothing; no transcript parity check")
    p.add_argument("--rank-fraction", type=float, metavar="F",
                   help="with --random-weights: every encoder linear at F x its break-even rank (F ~ the share of "
                   "the linears' parameters kept; default: dense)")
    p.add_argument("--processor", metavar="SPEC",
                   help="where the tokenizer and feature extractor come from when MODEL has none (the authors' "
                   "efficient-speech/lite-whisper-* checkpoints; default: the openai/whisper-* model of its shape)")
    p.add_argument("--int8", action="store_true",
                   help="also write an int8-weight encoder (ONNX Runtime, dynamic quantisation) and make it the "
                   "default on CPUs without native bfloat16 (where OpenVINO runs encoder.onnx in bfloat16, faster "
                   "and more accurate; see --encoder in lite-whisper transcribe --help)")
    p.add_argument("--int8-max-error", default="0.05", metavar="E",
                   help="with --int8: leave float32 the MatMuls (most harmful first) that would push the encoder's "
                   "relative output error on the calibration clips past E; 'none' quantises every one (default: "
                   "0.05). Up to 96 MatMuls each is tried alone; more (medium, large) are ranked by one sensitivity "
                   "pass and settled in a few trials")
    p.add_argument("--int8-smoothing", default="0.5", metavar="ALPHA",
                   help="with --int8: smooth activation outliers into the weights before quantising (SmoothQuant's "
                   "alpha, 0..1; folded exactly, no run-time cost); 'none' turns it off (default: 0.5)")
    p.add_argument("--calibration",
                   help="with --int8: clips that set the smoothing ranges and the int8 error (the first 8 are used, "
                   "2 for encoders over 100M parameters; default: the calibration split)")
    p.add_argument("--int8-min-inner", type=int, default=0, metavar="K",
                   help="with --int8: leave MatMuls whose inner dimension is below K in float32 (default: 0, none)")
    p.add_argument("--decoder", choices=["int8", "int8_float32", "float32", "int16"],
                   help="CTranslate2 weight type of the decoder (default: int8)")
    p.add_argument("--threads", type=int, help="cores the runtime uses by default (recorded in the manifest)")
    p.add_argument("--data", help="clips for the transcript parity check (default: the dev split)")
    p.add_argument("--parity-clips", type=int, default=4, help="clips transcribed for the parity check (default: 4)")
    p.add_argument("--overwrite", action="store_true", help="replace the output folder if it exists")
    p.set_defaults(run=run)


def run(args) -> int:
    if (args.model is None) == (args.random_weights is None):
        raise CLIError("give a MODEL to export, or --random-weights ARCH (not both)")
    if args.rank_fraction is not None and (args.random_weights is None or not 0 < args.rank_fraction < 1):
        raise CLIError("--rank-fraction takes a value between 0 and 1, with --random-weights")
    if args.processor is not None and args.random_weights is not None:
        raise CLIError("--processor cannot be used with --random-weights (its processor is built in)")
    positive(args.threads, "--threads")
    positive(args.parity_clips, "--parity-clips")
    if args.int8_min_inner < 0:
        raise CLIError(f"--int8-min-inner must be 0 or more, got {args.int8_min_inner}")
    max_error = _optional_number(args.int8_max_error, "--int8-max-error", "0.05")
    if max_error is not None and max_error <= 0:
        raise CLIError(f"--int8-max-error must be above 0, got {max_error:g}")
    smoothing = _optional_number(args.int8_smoothing, "--int8-smoothing", "0.5")
    if smoothing is not None and not 0 <= smoothing <= 1:
        raise CLIError(f"--int8-smoothing must be within 0..1 or 'none', got {smoothing:g}")
    if args.format == "optimum":
        refused = [option for option, given in (("--int8", args.int8), ("--decoder", args.decoder is not None),
                                                ("--threads", args.threads is not None)) if given]
        if refused:
            raise CLIError(f"--format optimum does not take {', '.join(refused)}: its folder always holds float32 and "
                           "int8 (*_quantized.onnx) graphs, both ONNX (no CTranslate2 decoder), and the runtime that "
                           "loads it picks its threads")
    if args.output.exists() and not args.overwrite:
        raise CLIError(f"{args.output}: already exists; choose another output folder or pass --overwrite")
    for module, package in (("onnx", "onnx"), ("onnxruntime", "onnxruntime"), ("onnxscript", "onnxscript"),
                            ("ctranslate2", "ctranslate2"), ("faster_whisper", "faster-whisper")):
        try:
            __import__(module)
        except ImportError:
            raise CLIError(f"export needs {package}: pip install 'lite-whisper[deploy]'") from None
    dataset = open_dataset(args.data, args.parity_clips, "evaluation", "dev.txt") if args.random_weights is None else []
    from lite_whisper.deploy.export import INT8_CALIBRATION_CLIPS, export  # imports torch: after the cheap checks

    optimum = args.format == "optimum"
    calibration = (open_dataset(args.calibration, INT8_CALIBRATION_CLIPS, "calibration", "calibration.txt")
                   if args.int8 or optimum else None)
    from lite_whisper.files import output_lock
    from lite_whisper.models.loading import load_pytorch_model

    if optimum and args.random_weights is not None:  # refused before the weights are made (meta tensors only)
        from lite_whisper.deploy.optimum_layout import check_exportable
        from lite_whisper.models.random import meta_model

        check_exportable(meta_model(args.random_weights, args.rank_fraction))
    with output_lock(args.output):
        if args.random_weights is not None:
            from lite_whisper.models.random import random_whisper

            print(f"building a random-weight {args.random_weights} model"
                  + (f" at {args.rank_fraction:g} x break-even rank" if args.rank_fraction else " (dense)")
                  + ": for time and memory only", file=sys.stderr, flush=True)
            model, processor = random_whisper(args.random_weights, args.rank_fraction)
        else:
            model, processor = load_pytorch_model(args.model, dtype="float32", processor=args.processor)
        clips = [(clip.id, clip.audio) for clip in dataset]
        calibration_clips = [(clip.id, clip.audio) for clip in calibration] if calibration is not None else ()
        if optimum:
            return _export_optimum(args, model, processor, clips, calibration_clips, max_error, smoothing)
        manifest = export(model, processor, args.output, source=args.model or model.config.name_or_path, int8=args.int8,
                          decoder_quantization=args.decoder or "int8", threads=args.threads, parity_audio=clips,
                          calibration_audio=calibration_clips, overwrite=args.overwrite,
                          min_int8_inner=args.int8_min_inner, int8_max_error=max_error, int8_smoothing=smoothing,
                          release_model=True,  # loaded for this export alone: spent as it goes
                          log=lambda message: print(message, file=sys.stderr, flush=True))
    parity = manifest["parity"]
    print("encoder relative error vs PyTorch: " + ", ".join(
        f"{kind} {parity[f'encoder_relative_error_{kind}']:.2e}" for kind in ("float32", "int8", "bfloat16")
        if f"encoder_relative_error_{kind}" in parity))
    if "transcripts_identical_float32" in parity:
        clips_count = len(parity["transcripts_pytorch"])
        print(f"greedy transcripts identical to PyTorch: {parity['transcripts_identical_float32']}/{clips_count} "
              f"(float32 encoder and decoder), {parity['transcripts_identical_shipped']}/{clips_count} "
              f"(as it runs here: {parity['transcripts_shipped_encoder']} encoder, {manifest['decoder']['compute_type']} decoder)")
    print(f"wrote {args.output} in {manifest['export_seconds']:.0f} s, peak memory {manifest['export_peak_rss_mb'] / 1024:.1f} GB "
          f"({json.dumps(manifest['versions'])})")
    return 0


def _export_optimum(args, model, processor, clips, calibration_clips, max_error, smoothing) -> int:
    from lite_whisper.deploy.optimum_layout import export_optimum  # refuses a model too big before any work

    manifest = export_optimum(model, processor, args.output, source=args.model or model.config.name_or_path,
                              parity_audio=clips, calibration_audio=calibration_clips, overwrite=args.overwrite,
                              min_int8_inner=args.int8_min_inner, int8_max_error=max_error, int8_smoothing=smoothing,
                              log=lambda message: print(message, file=sys.stderr, flush=True))
    parity = manifest["parity"]
    print(f"encoder relative error vs PyTorch: float32 {parity['encoder_relative_error_float32']:.2e}, "
          f"int8 {parity['encoder_relative_error_int8']:.2e}")
    if "transcripts_lite_whisper" in parity:
        count = len(parity["transcripts_lite_whisper"])
        print(f"greedy transcripts identical to lite-whisper's: {parity['transcripts_identical_float32']}/{count} "
              f"(float32), {parity['transcripts_identical_int8']}/{count} (int8, *_quantized.onnx)")
    print(f"wrote {args.output} ({', '.join(manifest['files'])}) in {manifest['export_seconds']:.0f} s, "
          f"peak memory {manifest['export_peak_rss_mb'] / 1024:.1f} GB")
    return 0


def _optional_number(text: str, option: str, example: str) -> float | None:
    """A number, or None for 'none'."""
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise CLIError(f"{option} takes a number such as {example} or 'none', got {text!r}") from None
