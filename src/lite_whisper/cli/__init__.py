"""The `lite-whisper` command: parse, validate, call the library, print.

One module per command (`transcribe`, `evaluate`, `variants`, `convert`, `calibrate`, `compress`, `inspect`,
`export`, `sweep`, `bench`, `serve`,
`loadtest`), each with `add_parser(commands)` and `run(args)`; `common` holds what they share.
`main(argv)` returns an exit code, so tests call it directly.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

EPILOG = """examples:
  lite-whisper eval tiny.en --data ../shared/speech/splits/dev.txt --output tiny.json
  lite-whisper variants -o dev-variants          # noisy / reverberant / telephone / speed copies of the dev split
  lite-whisper eval tiny.en --data dev-variants  # WER on every variant, looping utterances counted
  lite-whisper transcribe base talk.flac --timestamps
  lite-whisper convert ./faster-whisper-base ./whisper-base-hf
  lite-whisper compress tiny.en --calibration ../shared/speech/splits/calibration.txt -o tiny-lite
  torchrun --nproc-per-node 2 --no-python lite-whisper compress base -o base-lite   # sharded calibration
  lite-whisper bench tiny-lite --baseline tiny.en --batch-size 1,4
  lite-whisper export tiny-lite -o tiny-lite-export --int8      # ONNX Runtime / OpenVINO + CTranslate2
  lite-whisper sweep tiny.en --thresholds 0.99:0.999,0.95 -o sweeps/tiny.en
  lite-whisper serve tiny-lite-export --port 8000        # OpenAI's audio API, batching across requests
  lite-whisper loadtest http://127.0.0.1:8000 --concurrency 1,4,16   # its throughput and latency under load

Errors are printed as one line (exit code 2); --debug, or LITE_WHISPER_DEBUG=1, shows the traceback.
"""


def build_parser() -> argparse.ArgumentParser:
    from lite_whisper import __version__
    from lite_whisper.cli import (bench, calibrate, compress, convert, evaluate, export, inspect, loadtest, serve,
                                  sweep, transcribe, variants)

    parser = argparse.ArgumentParser(
        prog="lite-whisper",
        description="Compress Whisper's encoder with calibrated low-rank approximation; measure WER and speed.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lite-whisper {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (transcribe, evaluate, variants, convert, calibrate, compress, inspect, export, sweep, bench,
                    serve, loadtest):
        command.add_parser(commands)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean the input was wrong (not a bug): one line, exit code 2."""
    from safetensors import SafetensorError

    from lite_whisper.cli.common import CLIError

    return (CLIError, ValueError, OSError, SafetensorError, ImportError)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = ["lite-whisper", *(sys.argv[1:] if argv is None else argv)]  # what a result records
    debug = args.debug or os.environ.get("LITE_WHISPER_DEBUG", "").lower() in ("1", "true", "yes")
    _quiet_transformers(debug)
    try:
        with warnings.catch_warnings():
            if not debug:
                _one_line_warnings()
            return args.run(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except user_errors() as error:
        if debug:
            raise
        print(f"lite-whisper {args.command}: error: {_describe(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # a bug: still one line, with where to look
        if debug:
            raise
        print(f"lite-whisper {args.command}: internal error: {type(error).__name__}: {error} "
              "(rerun with --debug for the traceback, and please report it)", file=sys.stderr)
        return 1


def _describe(error: BaseException) -> str:
    """One line: the message, with the OS's words for file errors (disk full, permission denied)."""
    from safetensors import SafetensorError

    if isinstance(error, SafetensorError):
        return f"could not read or write a safetensors file ({error}); is the disk full, or the file truncated?"
    if isinstance(error, OSError) and error.strerror and not str(error).startswith(str(error.filename or "\0")):
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}"
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


def _quiet_transformers(debug: bool) -> None:
    """transformers warns on every Whisper generate call (attention mask of fixed 30 s inputs,
    deprecated argument styles) and draws a bar per file it loads or saves; none of it says anything a
    user can act on, and it lands in the middle of our output. --debug shows it all. Set through the
    environment, which transformers and huggingface_hub read when they are imported: nothing is
    imported here, so help and argument errors stay instant."""
    if debug:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # also transformers' own per-file bars
    if "transformers" in sys.modules:  # imported already (a caller of main in the same process): tell it directly
        from transformers.utils import logging

        logging.set_verbosity_error()
        logging.disable_progress_bar()


def _one_line_warnings() -> None:
    """Our warnings as one line each (`warning: ...`, no source path or code line); third-party ones off."""
    warnings.simplefilter("ignore")
    warnings.filterwarnings("always", module=r"lite_whisper(\.|$)")

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"warning: {message}", file=sys.stderr, flush=True)

    warnings.showwarning = show


if __name__ == "__main__":
    sys.exit(main())
