"""`lite-whisper loadtest`: throughput and latency of a running transcription server under concurrent load."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lite_whisper.cli.common import CLIError, check_output_file, open_dataset, positive

EPILOG = """examples:
  lite-whisper serve tiny.en-export --port 8000 &
  lite-whisper loadtest http://127.0.0.1:8000 --data ../shared/speech/splits/dev.txt --concurrency 1,4,16,64 \\
      --duration 60 --output serve-tiny.json
  # the same 155 clips at every level and for every server: servers of different speed compared on the same audio
  lite-whisper loadtest http://127.0.0.1:8000 --concurrency 1,4,16,64 --requests 155 --output serve-tiny.json
  # a soak: 10 minutes at 64 clients, 10% malformed requests, transcripts checked against `transcribe --json`
  lite-whisper transcribe tiny.en-export ../shared/speech/dev/*.flac --json > expected.json
  lite-whisper loadtest http://127.0.0.1:8000 --data dev.txt --concurrency 64 --duration 600 \\
      --bad-fraction 0.1 --expect expected.json --output soak.json

Throughput is audio seconds transcribed per wall second (the server's RTFx under load). Works with any
server that speaks OpenAI's audio API; batch sizes and RSS come from a lite-whisper server's /metrics.
"""


def add_parser(commands) -> None:
    p = commands.add_parser(
        "loadtest", help="load a transcription server: throughput and latency at several concurrencies",
        description="Send the clips of a dataset to a server's /v1/audio/transcriptions from N concurrent clients "
        "for a while, at each concurrency in turn; report audio seconds served per second, latency percentiles, "
        "errors by status and the server's peak RSS.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", help="the server's base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--data", help="clips to send: a folder, list file, manifest or hf:NAME:SPLIT "
                   "(default: the shared dev split)")
    p.add_argument("--limit", type=int, help="use only the first N clips")
    p.add_argument("--concurrency", default="1,4,16,64", help="clients in flight, comma-separated (default: 1,4,16,64)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load per level (default: 60)")
    p.add_argument("--requests", type=int, help="instead of --duration: send exactly N good requests per level "
                   "(the same clips to every server: a fair comparison of servers of different speed)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of the same load before each level, not "
                   "counted (default: 5)")
    p.add_argument("--bad-fraction", type=float, default=0.0,
                   help="share of malformed requests mixed in (they must come back 4xx; default: 0)")
    p.add_argument("--expect", type=Path, help="JSON from `lite-whisper transcribe --json`: count answers whose "
                   "text differs (matched by file name)")
    p.add_argument("--api-key", help="sent as 'Authorization: Bearer KEY'")
    p.add_argument("--output", type=Path, help="write every level's figures as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    import httpx

    from lite_whisper.benchmark.environment import environment
    from lite_whisper.files import write_json_atomic
    from lite_whisper.benchmark.loadtest import encode_clips, run_loadtest, table, to_dict

    concurrencies = parse_levels(args.concurrency)
    positive(args.limit, "--limit")
    positive(args.requests, "--requests")
    if not args.duration > 0 or args.warmup < 0:
        raise CLIError("--duration must be positive and --warmup at least 0")
    if not 0.0 <= args.bad_fraction < 1.0:
        raise CLIError(f"--bad-fraction must be in [0, 1), got {args.bad_fraction:g}")
    check_output_file(args.output, "loadtest.json")
    url = args.url.rstrip("/")
    expected = read_expected(args.expect) if args.expect else None
    try:
        health = httpx.get(f"{url}/health", timeout=10)
    except httpx.HTTPError as error:
        raise CLIError(f"{url}: no server answers ({type(error).__name__}: {error}); start one with "
                       "lite-whisper serve MODEL") from None
    if health.status_code not in (200, 404):  # other servers may have no /health
        raise CLIError(f"{url}/health answered {health.status_code}: the server is not ready")
    dataset = open_dataset(args.data, args.limit, "evaluation", "dev.txt")
    requests = encode_clips(dataset, expected)
    if expected is not None and not any(r.expected is not None for r in requests):
        raise CLIError(f"--expect {args.expect}: no file name matches a clip of {dataset.spec}")
    seconds = sum(r.seconds for r in requests)
    each = f"{args.requests} requests" if args.requests else f"{args.duration:g} s"
    print(f"{len(requests)} clips ({seconds:.0f} s of audio) to {url}, concurrency {args.concurrency}, {each} each",
          flush=True)
    results = run_loadtest(url, requests, concurrencies, None if args.requests else args.duration,
                           count=args.requests, warmup=args.warmup, api_key=args.api_key,
                           bad_fraction=args.bad_fraction, log=lambda message: print(message, flush=True))
    print(table(results))
    if args.output is not None:
        write_json_atomic(args.output, {"url": url, "data": dataset.spec, "clips": len(requests),
                                        "audio_seconds": seconds,
                                        "duration": None if args.requests else args.duration,
                                        "requests_per_level": args.requests,
                                        "bad_fraction": args.bad_fraction, "levels": to_dict(results),
                                        "client_environment": environment()})
        print(f"wrote {args.output}")
    return 0


def parse_levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CLIError(f"--concurrency {text!r}: give whole numbers separated by commas, e.g. 1,4,16") from None
    if not levels or min(levels) < 1:
        raise CLIError(f"--concurrency {text!r}: every level must be at least 1")
    return levels


def read_expected(path: Path) -> dict[str, str]:
    """{clip id: text} from `lite-whisper transcribe --json` output (clip id = the file's name without suffix)."""
    try:
        rows = json.loads(path.read_text())
        return {Path(row["source"]).stem: row["text"] for row in rows}
    except FileNotFoundError:
        raise CLIError(f"--expect {path}: file not found") from None
    except (ValueError, TypeError, KeyError):
        raise CLIError(f"--expect {path}: not the JSON list `lite-whisper transcribe --json` writes") from None
