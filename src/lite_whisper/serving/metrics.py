"""What the server counts, as Prometheus text (`GET /metrics`), in a registry of its own per server."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from lite_whisper.memory import peak_rss_bytes

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, process_open_fds, CPU seconds
        r = self.registry
        self.requests = Counter("lite_whisper_requests", "HTTP requests answered, by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("lite_whisper_request_latency_seconds", "time from request to response, "
                                 "transcription endpoints", buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("lite_whisper_queue_depth", "requests waiting for the worker", registry=r)
        self.batch_size = Histogram("lite_whisper_batch_size", "windows per batch the worker ran",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.audio_seconds = Counter("lite_whisper_audio_seconds", "seconds of audio transcribed", registry=r)
        self.encoder_seconds = Counter("lite_whisper_encoder_seconds", "worker time in features and the encoder",
                                       registry=r)
        self.decoder_seconds = Counter("lite_whisper_decoder_seconds", "worker time decoding (and long-audio "
                                       "pipelines)", registry=r)
        Gauge("lite_whisper_peak_rss_bytes", "peak resident set size of the server process",
              registry=r).set_function(peak_rss_bytes)

    def observe_batch(self, size: int, encoder_seconds: float, decoder_seconds: float, audio_seconds: float) -> None:
        self.batch_size.observe(size)
        self.encoder_seconds.inc(encoder_seconds)
        self.decoder_seconds.inc(decoder_seconds)
        self.audio_seconds.inc(audio_seconds)

    def set_queue_depth(self, depth: int) -> None:
        self.queue_depth.set(depth)

    def observe_request(self, endpoint: str, status: int, seconds: float | None = None) -> None:
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()
        if seconds is not None:
            self.latency.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
