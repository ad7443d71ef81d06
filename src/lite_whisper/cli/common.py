"""What every command shares: the user-error type, shared options and their validation.

A user error (bad argument, missing file, wrong model) is a `CLIError` or one of the library's
ValueError/OSError subclasses: `main` prints it as one line and exits with code 2, before any
expensive work where the check can be made up front.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lite_whisper.calibration import PRODUCT_PRECISIONS
from lite_whisper.runtime.encoders import ENCODER_KINDS

MODEL_HELP = "a short name (tiny.en, base), a Hugging Face or CTranslate2 folder, or a hub id"
DTYPES = ["float32", "float16", "bfloat16"]


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


def add_device_option(parser: argparse.ArgumentParser, what: str = "") -> None:
    parser.add_argument("--device", default="cpu", help=f"torch device{what}: cpu, cuda, cuda:N or mps (default: cpu)")
    parser.add_argument("--threads", type=int, help="CPU threads the model runs on (default: this machine's "
                        "physical cores; an exported folder: the number it was exported with, if any)")


def default_dtype(device: str | None) -> str:
    """A GPU's default compute dtype is float16 (its tensor cores; Whisper was trained in it), float32 elsewhere."""
    return "float16" if str(device or "cpu").startswith("cuda") else "float32"


def add_model_options(parser: argparse.ArgumentParser) -> None:
    add_device_option(parser)
    parser.add_argument("--dtype", choices=DTYPES, help="compute dtype (default: float16 on CUDA, else float32)")
    parser.add_argument("--encoder", default="auto", choices=ENCODER_KINDS,
                        help="exported folders only: the encoder that runs; auto = bfloat16 on OpenVINO where the CPU "
                        "has native bfloat16 (AMX, AVX512_BF16), else the export's default (default: auto)")
    parser.add_argument("--decoder", default="transformers", choices=["transformers", "ctranslate2"],
                        help="PyTorch models: what decodes. ctranslate2 converts the model's decoder once at load and "
                        "feeds it the PyTorch encoder's states (on CUDA: float16, encoder replayed from CUDA graphs; "
                        "needs the deploy extra). Exported folders always decode with CTranslate2 (default: "
                        "transformers)")


def backend_of(args) -> str:
    """The engine backend (`api.BACKENDS`) the model options choose: --faster-whisper (serve), --decoder ctranslate2
    for a PyTorch model (an exported folder decodes with CTranslate2 anyway), else auto."""
    from lite_whisper.export_manifest import is_exported_folder

    if getattr(args, "faster_whisper", False):
        return "faster-whisper"
    if args.decoder == "ctranslate2" and not is_exported_folder(Path(str(args.model)).expanduser()):
        return "hybrid"
    return "auto"


def add_decoding_options(parser: argparse.ArgumentParser, language_default: str | None,
                         fallback_default: bool = False) -> None:
    parser.add_argument(
        "--language", default=language_default,
        help="spoken language code, e.g. en (default: %(default)s; none = detect, multilingual models only)",
    )
    parser.add_argument("--task", default="transcribe", choices=["transcribe", "translate"])
    parser.add_argument("--prompt", help="text that comes before the audio (Whisper's initial prompt): names, "
                        "spellings, style, e.g. --prompt 'Kubernetes, PostgreSQL.'")
    parser.add_argument("--beam-size", type=int, default=1, help="beam width; 1 = greedy (default: 1)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips decoded together (default: 8)")
    parser.add_argument("--max-new-tokens", type=int, help=(
        "stop each transcript after N tokens (default: Whisper's 448-token limit); "
        "bounds the time a badly compressed model spends repeating itself"))
    parser.add_argument("--no-speech-threshold", type=float, default=0.6, help=(
        "a clip whose no-speech probability exceeds this and whose mean token log-probability is below "
        "-1 transcribes as empty, as in Whisper and faster-whisper (default: 0.6; 1 = never)"))
    parser.add_argument("--temperature-fallback", action=argparse.BooleanOptionalAction, default=fallback_default,
                        help="Whisper's safeguard: a window whose text compresses like a repetition loop (ratio > 2.4) "
                        "or whose mean log-probability is below -1 is decoded again by sampling at temperatures "
                        "0.2, 0.4, ... 1.0, best of --best-of samples (default: %s)"
                        % ("on" if fallback_default else "off: greedy only, the comparable figure"))
    parser.add_argument("--best-of", type=int, default=5, help="samples per fallback temperature (default: 5)")
    parser.add_argument("--early-end-recovery", action=argparse.BooleanOptionalAction, default=True, help=(
        "a window whose transcript stops while Silero VAD still hears speech (under 1 token per second of it) is "
        "decoded again: with timestamps, going on from the last one, then its speech regions apart (default: on)"))
    parser.add_argument("--long-form", choices=["vad", "sequential"], default="vad", help=(
        "audio over 30 s: 'vad' cuts it at its pauses (Silero VAD) into windows of <= 30 s decoded as batches, "
        "skipping what is not speech; 'sequential' walks it window by window as Whisper does (default: vad)"))


def decoding_options(args):
    from lite_whisper.transcription.types import WHISPER_TEMPERATURES, DecodingOptions

    language = None if args.language in (None, "none", "auto") else args.language
    positive(args.max_new_tokens, "--max-new-tokens")
    positive(args.beam_size, "--beam-size")
    positive(getattr(args, "best_of", None), "--best-of")
    threshold = getattr(args, "no_speech_threshold", 0.6)
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise CLIError(f"--no-speech-threshold must be between 0 and 1, got {threshold}")
    return DecodingOptions(language=language, task=args.task, beam_size=args.beam_size,
                           timestamps=getattr(args, "timestamps", False), max_new_tokens=args.max_new_tokens,
                           no_speech_threshold=None if threshold is None or threshold >= 1.0 else threshold,
                           temperatures=WHISPER_TEMPERATURES if getattr(args, "temperature_fallback", False) else (0.0,),
                           best_of=getattr(args, "best_of", 5), prompt=getattr(args, "prompt", None),
                           long_form=getattr(args, "long_form", "vad"),
                           recover_early_end=getattr(args, "early_end_recovery", True))


def positive(value: int | None, what: str) -> None:
    if value is not None and value < 1:
        raise CLIError(f"{what} must be at least 1, got {value}")


def check_device(device: str) -> str:
    """`device` if torch can use it here, else a CLIError saying what to pass instead."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise CLIError(f"--device {device}: not a torch device; use cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, but no GPU is visible"
            raise CLIError(f"--device {device}: CUDA is not available (torch {torch.__version__} is {build}); "
                           "use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise CLIError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    elif parsed.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise CLIError(f"--device {device}: Apple's MPS backend is not available here; use --device cpu")
    elif parsed.type != "cpu":
        raise CLIError(f"--device {device}: lite-whisper runs on cpu, cuda or mps")
    return device


def check_output_file(path: Path | None, example: str) -> None:
    """An --output that names a file (not a folder) in a folder that exists or can be made."""
    if path is None:
        return
    if path.is_dir():
        raise CLIError(f"--output {path} is a folder; give a file name such as {example}")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise CLIError(f"--output {path}: {parent} is a file, not a folder")


def open_calibration(args, spec: str | None = None, default_only: bool = False):
    """The calibration dataset of calibrate/compress: --calibration (or the default split), --limit,
    --shuffle-seed, with --augment's degraded copies."""
    from lite_whisper.data.augment import Augmentation

    check_augment(args.augment)
    dataset = open_dataset(None if default_only else args.calibration, args.limit, "calibration", "calibration.txt",
                           args.shuffle_seed)
    return dataset.augmented(Augmentation(copies=args.augment)) if args.augment else dataset


def open_dataset(spec: str | None, limit: int | None, what: str, default_name: str, shuffle_seed: int | None = None):
    """Open a dataset spec (cheap: no audio is decoded), or the default split with a hint if it is missing.

    With `shuffle_seed` the clips come in an order fixed by the seed, and `limit` takes the first
    of that order (a random subset of a big manifest, the same on every machine)."""
    from lite_whisper.data.datasets import DatasetError, default_speech_dir, load_dataset

    if spec is not None:
        dataset = load_dataset(spec, limit=limit)
        return dataset if shuffle_seed is None else dataset.shuffled(shuffle_seed)
    default = default_speech_dir() / "splits" / default_name
    try:
        dataset = load_dataset(default, limit=limit)
        return dataset if shuffle_seed is None else dataset.shuffled(shuffle_seed)
    except DatasetError:
        raise CLIError(
            f"the default {what} set {default} was not found; pass {'--calibration' if what == 'calibration' else '--data'} "
            "SPEC (a folder, list file, manifest or hf:NAME:SPLIT) or set LITE_WHISPER_SPEECH to the speech folder"
        ) from None


def open_datasets(specs: list[str] | None, limit: int | None, what: str, default_name: str):
    """[(label, dataset)] of --data given once or more; a folder written by `lite-whisper variants` stands for
    every variant in it (labelled by the variant's name). Nothing is decoded yet."""
    from lite_whisper.data.variants import is_variants_root, variant_folders

    if not specs:
        dataset = open_dataset(None, limit, what, default_name)
        return [(dataset.spec, dataset)]
    opened = []
    for spec in specs:
        if is_variants_root(spec):
            opened += [(name, open_dataset(str(folder), limit, what, default_name)) for name, folder in variant_folders(spec)]
        else:
            opened.append((spec, open_dataset(spec, limit, what, default_name)))
    labels = [label for label, _ in opened]
    if len(set(labels)) != len(labels):
        raise CLIError(f"--data names the same dataset twice: {', '.join(sorted({x for x in labels if labels.count(x) > 1}))}")
    return opened


def add_calibration_options(parser: argparse.ArgumentParser) -> None:
    """What calibrate and compress share: the data, how much of it, in which order, batched how."""
    parser.add_argument("--calibration",
                        help="calibration dataset spec (default: the calibration split under $LITE_WHISPER_SPEECH "
                        "or ../shared/speech)")
    parser.add_argument("--limit", type=int, help="use only the first N calibration clips")
    add_augment_option(parser)
    parser.add_argument("--shuffle-seed", type=int, metavar="S",
                        help="take the clips in an order fixed by S (with --limit: a random subset; hub datasets are "
                        "shuffled through a 10,000-row buffer)")
    parser.add_argument("--batch-size", type=int, default=8, help="calibration clips per encoder pass (default: 8)")
    parser.add_argument("--exclude-padding", action="store_true",
                        help="count only frames that carry audio (default: all 1500 frames per clip, as the paper)")
    parser.add_argument("--compute-dtype", default="float32", choices=DTYPES,
                        help="dtype the encoder computes in while calibrating (float16/bfloat16 under autocast, e.g. "
                        "on a GPU); moments are always accumulated in float64 (default: float32)")
    parser.add_argument("--products", default="float32", choices=PRODUCT_PRECISIONS,
                        help="precision of each batch's activation products before the float64 sums: float32 (TF32 "
                        "off), tf32 or bfloat16 (a GPU's tensor cores; emulated on the CPU, no faster there). "
                        "docs/RESULTS.md §13 measures their effect on the ranks (default: float32)")


# Degraded copies per calibration clip that compress, calibrate and sweep take by default: one copy
# kept more accuracy on noisy, reverberant and telephone speech for 1.6x the time (docs/RESULTS.md §10).
DEFAULT_AUGMENT_COPIES = 1


def add_augment_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--augment", type=int, default=DEFAULT_AUGMENT_COPIES, metavar="N",
                        help="also calibrate on N degraded copies of every clip (noise at 0-20 dB SNR, a synthetic "
                        "room, telephone band or speed 0.85-1.15x, drawn at random per copy and fixed by the clip's id); "
                        "the damage probes and distillation see them too. One copy costs about 1.6x the time and "
                        "keeps more accuracy on noisy, reverberant and telephone speech (docs/RESULTS.md §10); "
                        "0: clean audio only (default: %(default)s)")


def check_augment(copies: int) -> None:
    if copies < 0:
        raise CLIError(f"--augment must be 0 or more copies per clip, got {copies}")


def require_matplotlib(what: str) -> None:
    try:
        import matplotlib
    except ImportError:
        raise CLIError(f"{what} needs matplotlib for its plots: pip install 'lite-whisper[plot]'") from None
    del matplotlib  # only its presence matters here; the plots import it where they draw
