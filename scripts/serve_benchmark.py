"""`lite-whisper serve` under load: the batching server against itself with --max-batch 1 and against
faster-whisper int8 on the dense model, one request at a time — same machine, clips and threads.

    python scripts/serve_benchmark.py --server "tiny.en-75=runs/tiny.en-75-export" \\
        --server "tiny.en-75 b1=runs/tiny.en-75-export --max-batch 1" \\
        --server "faster-whisper tiny.en=tiny.en --faster-whisper --max-batch 1" \\
        --concurrency 1,4,16,64 --duration 60 -o runs/serve-bench

Each server is started (`lite-whisper serve ARGS --threads T --port P`), waited for (/health),
loaded by `lite-whisper loadtest` at every concurrency (its JSON kept as NAME.json), then stopped
with SIGTERM (a clean exit is checked). The table of all of them goes to summary.md and
summary.json. --bad-fraction mixes in malformed requests, --expect checks transcripts (a soak).
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

from lite_whisper.benchmark.loadtest import wait_until_ready

BIN = Path(sys.executable).parent / "lite-whisper"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", action="append", required=True, help="NAME=MODEL [serve options]")
    parser.add_argument("--data", help="clips to send (default: the shared dev split)")
    parser.add_argument("--concurrency", default="1,4,16,64")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--requests", type=int, help="a fixed number of requests per level instead of --duration")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bad-fraction", type=float, default=0.0)
    parser.add_argument("--expect", help="transcribe --json output to check the answers against")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    rows = []
    for spec in args.server:
        name, _, serve_args = spec.partition("=")
        result = run_server(name, shlex.split(serve_args), args)
        rows.append((name, serve_args, result))
    summary = [{"name": name, "serve": serve_args, **level} for name, serve_args, result in rows
               for level in result["levels"]]
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.output / "summary.md").write_text(markdown(summary) + "\n")
    print(markdown(summary))
    return 0


def run_server(name: str, serve_args: list[str], args) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (args.output / f"{slug(name)}.server.log").open("w")
    command = [str(BIN), "serve", *serve_args, "--threads", str(args.threads), "--port", str(port),
               "--log-level", "warning"]
    print(f"== {name}: {' '.join(command)}", flush=True)
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(url, process=server)
        output = args.output / f"{slug(name)}.json"
        load = [str(BIN), "loadtest", url, "--concurrency", args.concurrency, "--warmup", str(args.warmup),
                "--output", str(output)]
        load += ["--requests", str(args.requests)] if args.requests else ["--duration", str(args.duration)]
        load += ["--data", args.data] if args.data else []
        load += ["--bad-fraction", str(args.bad_fraction)] if args.bad_fraction else []
        load += ["--expect", args.expect] if args.expect else []
        subprocess.run(load, check=True)
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(300)
        log.close()
    print(f"   server exited with {code}", flush=True)
    result = json.loads(output.read_text())
    result["server_exit_code"] = code
    output.write_text(json.dumps(result, indent=2) + "\n")
    return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-._" else "-" for c in name)


def markdown(summary: list[dict]) -> str:
    lines = ["| server | concurrency | audio s/s | req/s | p50 s | p95 s | p99 s | ok | errors | mean batch | "
             "peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in summary:
        server = row["server"]  # what the server's /metrics said
        batch = server.get("mean_batch_size")
        lines.append(f"| {row['name']} | {row['concurrency']} | "
                     f"{row['audio_per_second']:.1f} | {row['requests_per_second']:.2f} | "
                     f"{row['latency_p50']:.2f} | {row['latency_p95']:.2f} | {row['latency_p99']:.2f} | {row['ok']} | "
                     f"{sum(row['errors'].values())} | {batch if batch is None else f'{batch:.1f}'} | "
                     f"{server.get('peak_rss_mb', 0):.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
