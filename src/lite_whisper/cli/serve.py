"""`lite-whisper serve`: an OpenAI-compatible transcription server that batches windows across requests."""

from __future__ import annotations

import argparse
import os
import signal
import socket
from pathlib import Path

from lite_whisper.cli.common import (
    MODEL_HELP,
    CLIError,
    add_model_options,
    backend_of,
    check_device,
    default_dtype,
    positive,
)

EPILOG = """examples:
  lite-whisper serve tiny.en-export --port 8000              # an exported folder (ONNX Runtime/OpenVINO + CTranslate2)
  lite-whisper serve base-lite --max-batch 16 --max-wait-ms 50   # bigger batches, a little more latency
  lite-whisper serve tiny.en --faster-whisper --max-batch 1  # the reference: faster-whisper int8, one at a time
  LITE_WHISPER_API_KEY=secret lite-whisper serve tiny.en-export   # clients must send 'Authorization: Bearer secret'

  curl http://127.0.0.1:8000/v1/audio/transcriptions -F file=@talk.flac -F model=whisper-1
  curl http://127.0.0.1:8000/v1/audio/transcriptions -F file=@talk.flac -F response_format=srt

The knobs: --max-batch windows go through the encoder together (more = more throughput under load,
each request waits for the slowest of its batch); --max-wait-ms is how long a lone request waits for
batch-mates (0 = never: batches form only from what queued while the last batch ran); --max-queue
bounds the requests waiting (beyond it: 429 with Retry-After). /health is 200 once the model is
loaded and warmed up; /metrics is Prometheus text. SIGTERM (or Ctrl-C) finishes the requests in
flight, then exits 0.
"""


def add_parser(commands) -> None:
    p = commands.add_parser(
        "serve", help="serve a model over OpenAI's audio API, batching across requests",
        description="Serve a Whisper model (anything lite-whisper loads, exported folders included) over HTTP with "
        "OpenAI's audio API: POST /v1/audio/transcriptions and /v1/audio/translations, GET /v1/models, /health, "
        "/metrics. Windows of up to 30 s from all requests in flight are batched through the encoder and decoder.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help=MODEL_HELP + ", or a folder written by lite-whisper export")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 = all)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument("--model-id", help="the model name /v1/models reports (default: the model argument)")
    p.add_argument("--max-batch", type=int, default=8, help="windows encoded and decoded together (default: 8)")
    p.add_argument("--max-wait-ms", type=float, default=20.0,
                   help="how long the oldest waiting window waits for batch-mates (default: 20)")
    p.add_argument("--max-queue", type=int, default=64, help="requests waiting before 429 (default: 64)")
    p.add_argument("--max-audio-seconds", type=float, default=3600.0,
                   help="longest audio per request; longer: 413 (default: 3600)")
    p.add_argument("--max-upload-mb", type=float, default=25.0, help="largest upload; larger: 413 (default: 25)")
    p.add_argument("--request-timeout", type=float, default=600.0,
                   help="seconds a request may take before 504 (default: 600)")
    p.add_argument("--api-key", default=os.environ.get("LITE_WHISPER_API_KEY"),
                   help="require 'Authorization: Bearer KEY' (default: $LITE_WHISPER_API_KEY; unset = no key)")
    p.add_argument("--faster-whisper", action="store_true",
                   help="serve the (dense) model through faster-whisper int8 instead, each request alone: "
                   "the reference to compare against")
    p.add_argument("--temperature-fallback", action=argparse.BooleanOptionalAction, default=True,
                   help="Whisper's safeguard: a window that loops or is unsure is decoded again at rising "
                   "temperatures (default: on, as OpenAI's API does at temperature 0)")
    p.add_argument("--beam-size", type=int, default=1, help="beam width; 1 = greedy (default: 1)")
    p.add_argument("--max-new-tokens", type=int,
                   help="stop each window's transcript after N tokens (default: Whisper's 448-token limit)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    add_model_options(p)
    p.set_defaults(run=run)


def run(args) -> int:
    import uvicorn

    from lite_whisper.serving.app import ServeSettings, create_app
    from lite_whisper.transcription.types import WHISPER_TEMPERATURES, DecodingOptions

    check_args(args)
    load = engine_loader(args)
    engine = load()  # before listening: a wrong model is an error here, not a server that never gets ready
    settings = ServeSettings(model_id=args.model_id or args.model, max_batch=args.max_batch,
                             max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                             max_audio_seconds=args.max_audio_seconds, max_upload_mb=args.max_upload_mb,
                             request_timeout=args.request_timeout, api_key=args.api_key or None,
                             decoding=DecodingOptions(beam_size=args.beam_size, max_new_tokens=args.max_new_tokens,
                                                      temperatures=WHISPER_TEMPERATURES if args.temperature_fallback
                                                      else (0.0,)))
    app = create_app(lambda: engine, settings)
    print(f"lite-whisper serve: {engine!r} on http://{args.host}:{args.port} (max batch {args.max_batch}, "
          f"max wait {args.max_wait_ms:g} ms, queue {args.max_queue}{', API key required' if args.api_key else ''})",
          flush=True)
    # uvicorn drains in-flight requests on SIGTERM/SIGINT before the app's shutdown, then raises the signal
    # again against the handlers it found: a drained shutdown is a clean one here, so those do nothing
    previous = {sig: signal.signal(sig, lambda signum, frame: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                    access_log=args.log_level == "debug", timeout_graceful_shutdown=int(args.request_timeout) + 5,
                    server_header=False)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def check_args(args) -> None:
    """Everything that can be checked before the model loads."""
    for value, flag in ((args.max_batch, "--max-batch"), (args.max_queue, "--max-queue"),
                        (args.threads, "--threads"), (args.beam_size, "--beam-size"),
                        (args.max_new_tokens, "--max-new-tokens")):
        positive(value, flag)
    for value, flag in ((args.max_audio_seconds, "--max-audio-seconds"), (args.max_upload_mb, "--max-upload-mb"),
                        (args.request_timeout, "--request-timeout")):
        if not value > 0:
            raise CLIError(f"{flag} must be positive, got {value:g}")
    if args.max_wait_ms < 0:
        raise CLIError(f"--max-wait-ms must be at least 0, got {args.max_wait_ms:g}")
    if not 0 < args.port < 65536:
        raise CLIError(f"--port must be between 1 and 65535, got {args.port}")
    check_device(args.device)
    try:  # the port is checked before the model loads (minutes for a large one)
        infos = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise CLIError(f"--host {args.host}: {error.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise CLIError(f"cannot listen on {args.host}:{args.port} ({error.strerror}); is another server "
                           "running there? choose another --port") from None


def engine_loader(args):
    """A function that loads the engine `args` describe."""
    from lite_whisper.export_manifest import is_exported_folder

    if args.faster_whisper and is_exported_folder(Path(args.model).expanduser()):
        raise CLIError(f"{args.model}: --faster-whisper serves a dense PyTorch-loadable model (a short name, a "
                       "Hugging Face or CTranslate2 folder), not an exported folder")

    def load():
        from lite_whisper.api import load_engine

        return load_engine(args.model, backend_of(args), dtype=args.dtype or default_dtype(args.device),
                           device=args.device, encoder=args.encoder, threads=args.threads)

    return load
