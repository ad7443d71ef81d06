"""Load on a transcription server (OpenAI's audio API): throughput and latency at several concurrencies.

Each level runs `concurrency` clients that send clips of a dataset (WAV, round-robin) back to
back for `duration` seconds (requests started before the end are waited for), or until `count`
good requests have been sent (a fixed workload: every server gets the same clips, so servers of
different speed are compared on the same audio; by time, a faster one reaches more clips, of
other lengths). Reported per
level: audio seconds served per second (the throughput), requests per second, latency
percentiles, errors by status, transcripts that differ from an expected set, the server's
peak RSS and mean batch size read from its /metrics (lite-whisper servers; other servers: absent).
`bad_fraction` mixes in malformed requests (every 1/f-th: random bytes, an empty file, an unknown field, a
JSON body in turn), which must come back 4xx; their count is reported apart.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from lite_whisper.data.audio import SAMPLE_RATE

BAD_KINDS = ("random bytes", "empty file", "unknown field", "json body")


@dataclass(frozen=True)
class Request:
    name: str
    wav: bytes
    seconds: float
    expected: str | None = None


@dataclass
class LevelResult:
    concurrency: int
    wall_seconds: float
    requests: int
    ok: int
    audio_seconds: float
    audio_per_second: float  # audio seconds transcribed per wall second: the throughput
    requests_per_second: float
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    errors: dict[str, int]  # status (or exception name) -> count, good requests only
    mismatches: int  # good requests answered 200 with another transcript than expected
    bad_requests: int
    bad_answered_4xx: int
    server: dict = field(default_factory=dict)  # from /metrics: peak RSS, batches, RSS and fds over time


def wait_until_ready(url: str, timeout: float = 600.0, process=None) -> None:
    """Poll `url`/health until it answers 200; fail early if `process` (a server's `Popen`) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} was not ready within {timeout:g} s")


def encode_clips(clips, expected: dict[str, str] | None = None) -> list[Request]:
    """Dataset clips as float32 WAV uploads at 16 kHz: exactly the samples the dataset holds (16-bit FLAC
    would round clips that were resampled, and their transcripts could differ from `transcribe`'s);
    `expected`: {clip id or file name without suffix: transcript}."""
    requests = []
    for clip in clips:
        buffer = io.BytesIO()
        sf.write(buffer, clip.audio, SAMPLE_RATE, format="WAV", subtype="FLOAT")
        name = Path(clip.id).name  # a list file's ids are paths; `transcribe --json` names files
        wanted = (expected or {}).get(clip.id, (expected or {}).get(name))
        requests.append(Request(f"{name}.wav", buffer.getvalue(), len(clip.audio) / SAMPLE_RATE, wanted))
    if not requests:
        raise ValueError("no clips to send")
    return requests


async def run_level(url: str, requests: list[Request], concurrency: int, duration: float | None, *,
                    count: int | None = None, api_key: str | None = None, bad_fraction: float = 0.0, seed: int = 0,
                    sample_every: float = 5.0, timeout: float = 600.0) -> LevelResult:
    """One concurrency level against `url` (the server's base URL): for `duration` seconds, or `count` good
    requests."""
    if (duration is None) == (count is None):
        raise ValueError("give a duration or a count of requests, not both")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
    order = itertools.cycle(range(len(requests)))
    chance = random.Random(seed)
    numbering = itertools.count()
    bad_kinds = itertools.cycle(BAD_KINDS)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counts = {"ok": 0, "requests": 0, "audio": 0.0, "mismatches": 0, "bad": 0, "bad_4xx": 0}
    samples: list[dict] = []
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=timeout) as client:
        before = await _server_metrics(client)
        start = time.perf_counter()
        deadline = start + duration if duration is not None else float("inf")

        def more() -> bool:
            return time.perf_counter() < deadline and (count is None or counts["requests"] < count)

        async def one_client():
            while more():
                number = next(numbering)  # request n is malformed when the running share of bad ones would fall short
                if int((number + 1) * bad_fraction) > int(number * bad_fraction):
                    counts["bad"] += 1
                    status = await _send_bad(client, next(bad_kinds), chance)
                    counts["bad_4xx"] += 400 <= status < 500
                    continue
                request = requests[next(order)]
                counts["requests"] += 1  # (no await since more(): the count cannot be overshot)
                sent = time.perf_counter()
                try:
                    response = await client.post("/v1/audio/transcriptions", files={
                        "file": (request.name, request.wav, "audio/wav")}, data={"model": "whisper-1"})
                except httpx.HTTPError as error:
                    errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                    continue
                if response.status_code != 200:
                    errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
                    continue
                latencies.append(time.perf_counter() - sent)
                counts["ok"] += 1
                counts["audio"] += request.seconds
                if request.expected is not None and response.json().get("text") != request.expected:
                    counts["mismatches"] += 1

        async def sampler():
            while True:
                await asyncio.sleep(sample_every)
                metrics = await _server_metrics(client)
                if metrics:
                    samples.append({"t": round(time.perf_counter() - start, 1), **_pick(metrics, _SAMPLED)})

        watcher = asyncio.create_task(sampler())
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        wall = time.perf_counter() - start
        watcher.cancel()
        after = await _server_metrics(client)
    server = {}
    if after:
        batches = after.get("lite_whisper_batch_size_count", 0) - before.get("lite_whisper_batch_size_count", 0)
        windows = after.get("lite_whisper_batch_size_sum", 0) - before.get("lite_whisper_batch_size_sum", 0)
        server = {"peak_rss_mb": after.get("lite_whisper_peak_rss_bytes", 0) / 2**20,
                  "batches": int(batches), "mean_batch_size": windows / batches if batches else None,
                  "encoder_seconds": after.get("lite_whisper_encoder_seconds_total", 0)
                  - before.get("lite_whisper_encoder_seconds_total", 0),
                  "decoder_seconds": after.get("lite_whisper_decoder_seconds_total", 0)
                  - before.get("lite_whisper_decoder_seconds_total", 0),
                  "over_time": samples}
    quantiles = np.quantile(latencies, [0.5, 0.95, 0.99]).tolist() if latencies else [None] * 3
    return LevelResult(concurrency, wall, counts["requests"], counts["ok"], counts["audio"], counts["audio"] / wall,
                       counts["ok"] / wall, *quantiles, errors, counts["mismatches"], counts["bad"],
                       counts["bad_4xx"], server)


async def _send_bad(client: httpx.AsyncClient, kind: str, chance: random.Random) -> int:
    try:
        if kind == "random bytes":
            response = await client.post("/v1/audio/transcriptions",
                                         files={"file": ("x.wav", chance.randbytes(chance.randint(1, 4096)))})
        elif kind == "empty file":
            response = await client.post("/v1/audio/transcriptions", files={"file": ("x.wav", b"")})
        elif kind == "unknown field":
            response = await client.post("/v1/audio/transcriptions", files={"file": ("x.wav", b"RIFF")},
                                         data={"colour": "blue"})
        else:
            response = await client.post("/v1/audio/transcriptions", json={"file": "x.wav"})
    except httpx.HTTPError:
        return 0
    return response.status_code


_SAMPLED = ("process_resident_memory_bytes", "process_open_fds", "lite_whisper_queue_depth")


def _pick(metrics: dict[str, float], names) -> dict[str, float]:
    return {name: metrics[name] for name in names if name in metrics}


async def _server_metrics(client: httpx.AsyncClient) -> dict[str, float]:
    """Unlabelled samples (and histogram sums/counts) of the server's /metrics; {} if it has none."""
    try:
        response = await client.get("/metrics", timeout=10)
    except httpx.HTTPError:
        return {}
    if response.status_code != 200:
        return {}
    values = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                pass
    return values


def run_loadtest(url: str, requests: list[Request], concurrencies: list[int], duration: float | None, *,
                 count: int | None = None, warmup: float = 5.0, log=lambda message: None,
                 **kwargs) -> list[LevelResult]:
    """Every concurrency level in turn (each after `warmup` seconds of the same load, not counted)."""
    results = []
    for concurrency in concurrencies:
        if warmup > 0:
            asyncio.run(run_level(url, requests, concurrency, warmup, **kwargs))
        log(f"concurrency {concurrency}: " + (f"{duration:g} s ..." if count is None else f"{count} requests ..."))
        result = asyncio.run(run_level(url, requests, concurrency, duration, count=count, **kwargs))
        log("  " + summary_line(result))
        results.append(result)
    return results


def summary_line(result: LevelResult) -> str:
    errors = sum(result.errors.values())
    return (f"{result.audio_per_second:6.1f} audio s/s, {result.requests_per_second:5.2f} req/s, "
            f"p50 {_ms(result.latency_p50)} p95 {_ms(result.latency_p95)} p99 {_ms(result.latency_p99)}, "
            f"{result.ok}/{result.requests} ok, {errors} errors, {result.mismatches} mismatched")


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}s"


def table(results: list[LevelResult]) -> str:
    lines = [f"{'concurrency':>11} {'audio s/s':>9} {'req/s':>6} {'p50 s':>6} {'p95 s':>6} {'p99 s':>6} "
             f"{'ok':>6} {'errors':>6} {'batch':>5} {'peak RSS MB':>11}"]
    for r in results:
        batch = r.server.get("mean_batch_size")
        lines.append(f"{r.concurrency:>11} {r.audio_per_second:9.1f} {r.requests_per_second:6.2f} "
                     f"{_num(r.latency_p50)} {_num(r.latency_p95)} {_num(r.latency_p99)} {r.ok:>6} "
                     f"{sum(r.errors.values()):>6} {(f'{batch:.1f}' if batch else '-'):>5} "
                     f"{r.server.get('peak_rss_mb', 0):11.0f}")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return f"{'-':>6}" if value is None else f"{value:6.2f}"


def to_dict(results: list[LevelResult]) -> list[dict]:
    return [asdict(result) for result in results]

