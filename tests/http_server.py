"""A real `lite-whisper serve` app on 127.0.0.1 for tests: uvicorn on a free port, in a thread of this process."""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager

import uvicorn

from lite_whisper.serving.app import ServeSettings, create_app
from lite_whisper.benchmark.loadtest import wait_until_ready


@contextmanager
def serving(engine, **settings):
    """Yield the base URL of a server running `engine`, ready (warmed up); stop it after."""
    app = create_app(lambda: engine, ServeSettings(**settings))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=30))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until_ready(url, timeout=120)
        yield url
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus text (0 if absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    head = f"{name}{{{wanted}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(head + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
