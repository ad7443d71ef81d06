"""The HTTP side: an ASGI app (Starlette) with OpenAI's audio endpoints in front of a `BatchScheduler`.

    POST /v1/audio/transcriptions   multipart: file, model, language, prompt, temperature,
    POST /v1/audio/translations     response_format, timestamp_granularities[]
    GET  /v1/models                 the one model served
    GET  /health                    200 once the model is loaded and warmed up, else 503
    GET  /metrics                   Prometheus text

The event loop only parses and answers: audio is decoded on a thread, inference runs on the
scheduler's worker. Uploads are read with a byte limit before they are parsed, so an oversized
body costs no more than the limit. Every error is JSON in OpenAI's shape.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lite_whisper.transcription.formats import render
from lite_whisper.serving.metrics import ServerMetrics
from lite_whisper.serving.requests import ApiError, decode_audio, parse_fields
from lite_whisper.serving.scheduler import BatchScheduler, QueueFull, ShuttingDown
from lite_whisper.transcription.engine import Engine, transcribe_batch
from lite_whisper.transcription.types import WHISPER_TEMPERATURES, DecodingOptions


@dataclass(frozen=True)
class ServeSettings:
    model_id: str = "lite-whisper"
    max_batch: int = 8
    max_wait_ms: float = 20.0
    max_queue: int = 64
    max_audio_seconds: float | None = 3600.0
    max_upload_mb: float = 25.0  # OpenAI's own limit
    request_timeout: float = 600.0
    api_key: str | None = None
    # what every request decodes with, before its own fields (language, temperature, response format)
    decoding: DecodingOptions = DecodingOptions(temperatures=WHISPER_TEMPERATURES)


class Server:
    """The state behind the routes: the engine (loaded by `load`, warmed up in the background), the
    scheduler that owns it, the metrics."""

    def __init__(self, load: Callable[[], Engine], settings: ServeSettings):
        self.load, self.settings = load, settings
        self.metrics = ServerMetrics()
        self.engine: Engine | None = None
        self.scheduler: BatchScheduler | None = None
        self.ready = threading.Event()
        self.failed: BaseException | None = None

    def start(self) -> None:
        """Load and warm up on a thread: the port answers /health (503) meanwhile."""
        threading.Thread(target=self._prepare, name="lite-whisper-load", daemon=True).start()

    def _prepare(self) -> None:
        try:
            engine = self.load()
            silence = np.zeros(16_000, dtype=np.float32)  # the first call of each engine is its slowest
            if engine.batches_windows:
                transcribe_batch(engine, [("warm-up", silence)], DecodingOptions())
            else:
                engine.transcribe_long("warm-up", silence, DecodingOptions())
            self.engine = engine
            self.scheduler = BatchScheduler(engine, max_batch=self.settings.max_batch,
                                            max_wait_ms=self.settings.max_wait_ms,
                                            max_queue=self.settings.max_queue, metrics=self.metrics)
            self.ready.set()
        except BaseException as error:  # noqa: BLE001 - /health says so; the log has it
            self.failed = error
            raise

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.close()


def create_app(load: Callable[[], Engine], settings: ServeSettings = ServeSettings()) -> Starlette:
    """The ASGI app. `load` returns the engine (called once, on a thread, at startup)."""
    server = Server(load, settings)

    @asynccontextmanager
    async def lifespan(app):
        server.start()
        yield
        await anyio.to_thread.run_sync(server.stop)  # in-flight requests are done: uvicorn drained them

    async def transcriptions(request: Request) -> Response:
        return await _audio(request, server, "transcribe")

    async def translations(request: Request) -> Response:
        return await _audio(request, server, "translate")

    async def models(request: Request) -> Response:
        _authorise(request, settings)
        return JSONResponse({"object": "list", "data": [
            {"id": settings.model_id, "object": "model", "created": 0, "owned_by": "lite-whisper"}]})

    async def health(request: Request) -> Response:
        if server.ready.is_set():
            return JSONResponse({"status": "ok", "model": settings.model_id})
        status = "failed" if server.failed is not None else "loading"
        return JSONResponse({"status": status}, status_code=503, headers={"Retry-After": "5"})

    async def metrics(request: Request) -> Response:
        return Response(server.metrics.render(), media_type=server.metrics.content_type)

    async def http_error(request: Request, error: HTTPException) -> Response:  # 404, 405
        return _error_response(ApiError(error.status_code, str(error.detail)))

    async def api_error(request: Request, error: ApiError) -> Response:
        return _error_response(error)

    routes = [Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
              Route("/v1/audio/translations", translations, methods=["POST"]),
              Route("/v1/models", models, methods=["GET"]),
              Route("/health", health, methods=["GET"]),
              Route("/metrics", metrics, methods=["GET"])]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error, ApiError: api_error},
                    middleware=[Middleware(CountRequests, metrics=server.metrics,
                                           paths={route.path for route in routes})])
    app.state.server = server
    return app


class CountRequests:
    """ASGI middleware: every answer counted by path and status; latency of successful transcriptions."""

    def __init__(self, app, metrics: ServerMetrics, paths: set[str]):
        self.app, self.metrics, self.paths = app, metrics, paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def send_counted(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            path = scope["path"] if scope["path"] in self.paths else "other"
            timed = status == 200 and path.startswith("/v1/audio/")
            self.metrics.observe_request(path, status, time.perf_counter() - start if timed else None)


async def _audio(request: Request, server: Server, task: str) -> Response:
    try:
        return await _transcribe(request, server, task)
    except ApiError as error:
        return _error_response(error)
    except Exception as error:  # noqa: BLE001 - a bug: a 500 in OpenAI's shape, never a dropped connection
        return _error_response(ApiError(500, f"internal error: {type(error).__name__}: {error}", kind="server_error"))


async def _transcribe(request: Request, server: Server, task: str) -> Response:
    settings = server.settings
    _authorise(request, settings)
    if not server.ready.is_set():
        raise ApiError(503, "the model is still loading; retry shortly", kind="server_error",
                       headers={"Retry-After": "5"})
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(415, f"send the audio as multipart/form-data, not {content_type or 'no content type'}",
                       code="unsupported_media_type")
    body = await _read_limited(request, settings.max_upload_mb)
    form_request = Request(request.scope, _replay(body))
    try:
        form = await form_request.form(max_files=1, max_fields=16)
    except HTTPException as error:
        raise ApiError(400, f"malformed multipart body: {error.detail}") from None
    except Exception as error:  # noqa: BLE001 - the multipart parser's own errors
        raise ApiError(400, f"malformed multipart body: {type(error).__name__}: {error}") from None
    try:
        parsed = parse_fields(form, task, server.engine.generation_config, settings.decoding)
    finally:
        await form.close()
    if parsed.options.word_timestamps and not server.engine.aligns_words:
        raise ApiError(400, f"this server's engine ({server.engine.name}) cannot time words",
                       param="timestamp_granularities[]")
    samples = await anyio.to_thread.run_sync(decode_audio, parsed.filename, parsed.data, settings.max_audio_seconds)
    try:
        future = server.scheduler.submit(parsed.filename, samples, parsed.options)
    except QueueFull as error:
        raise ApiError(429, f"the server is busy ({error}); retry later", kind="rate_limit_error",
                       code="queue_full", headers={"Retry-After": "1"}) from None
    except ShuttingDown:
        raise ApiError(503, "the server is shutting down", kind="server_error") from None
    try:
        result = await asyncio.wait_for(asyncio.wrap_future(future), settings.request_timeout)
    except (asyncio.TimeoutError, TimeoutError):
        future.cancel()
        raise ApiError(504, f"no result within {settings.request_timeout:g} s", kind="server_error",
                       code="timeout") from None
    body, media_type = render(result, parsed.response_format, task=task, language=_language(server, parsed.options))
    return Response(body, media_type=media_type)


def _language(server: Server, options: DecodingOptions) -> str | None:
    if options.task == "translate":
        return "en"
    if options.language is None and not getattr(server.engine.generation_config, "is_multilingual", True):
        return "en"
    return options.language


def _authorise(request: Request, settings: ServeSettings) -> None:
    if settings.api_key is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
        raise ApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'", code="invalid_api_key",
                       headers={"WWW-Authenticate": "Bearer"})


async def _read_limited(request: Request, megabytes: float) -> bytes:
    """The body, or 413 as soon as it passes `megabytes` MiB (declared or streamed)."""
    limit = int(megabytes * 2**20)
    declared = request.headers.get("content-length")
    too_big = ApiError(413, f"the upload is over {megabytes:g} MiB (--max-upload-mb)", code="file_too_large")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    if not size:
        raise ApiError(400, "the request body is empty: send the audio as the multipart field 'file'", param="file")
    return b"".join(chunks)


def _replay(body: bytes):
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _error_response(error: ApiError) -> Response:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)
