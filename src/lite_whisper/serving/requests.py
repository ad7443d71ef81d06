"""An OpenAI audio request's form fields, checked, as decoding options — and the errors in OpenAI's shape.

Fields (https://platform.openai.com/docs/api-reference/audio): `file`, `model` (any name: the
server runs one model), `language` (ISO-639-1, transcriptions only), `prompt` (text before the
audio, Whisper's initial prompt: its last 223 tokens), `temperature`
(0-1; 0 = Whisper's fallback ladder from 0, T = the ladder from T; a server started with
`--no-temperature-fallback` decodes at T only), `response_format`,
`timestamp_granularities[]` (`segment`, `word`). Anything else is refused, not ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from lite_whisper.data.audio import SAMPLE_RATE, AudioError, prepare_samples, read_samples
from lite_whisper.transcription.formats import RESPONSE_FORMATS, TIMED_FORMATS
from lite_whisper.transcription.policy import check_options, is_multilingual
from lite_whisper.transcription.types import WHISPER_TEMPERATURES, DecodingOptions

COMMON_FIELDS = {"file", "model", "prompt", "temperature", "response_format"}
FIELDS = {
    "transcribe": COMMON_FIELDS | {"language", "timestamp_granularities[]", "timestamp_granularities", "stream"},
    "translate": COMMON_FIELDS,
}


class ApiError(Exception):
    """An answer other than success: HTTP status and OpenAI's error body."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class AudioRequest:
    filename: str
    data: bytes
    options: DecodingOptions
    response_format: str


def parse_fields(form, task: str, generation_config, defaults: DecodingOptions = DecodingOptions()) -> AudioRequest:
    """Check a parsed multipart form (name -> str or upload) for `task`; the audio stays undecoded.
    `defaults`: the server's options (beam size, token limit, silence rule; fallback off: temperatures (0,))."""
    unknown = sorted(set(form.keys()) - FIELDS[task])
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r}; this endpoint takes {', '.join(sorted(FIELDS[task]))}",
                       param=unknown[0], code="unknown_parameter")
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise ApiError(400, "the audio file is missing: send it as the multipart field 'file'", param="file")
    response_format = _text(form, "response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise ApiError(400, f"response_format {response_format!r} is not one of {', '.join(RESPONSE_FORMATS)}",
                       param="response_format")
    granularities = form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
    for granularity in granularities:
        if granularity not in ("segment", "word"):
            raise ApiError(400, f"timestamp granularity {granularity!r} is not supported; use 'segment' or 'word'",
                           param="timestamp_granularities[]")
    if "word" in granularities and response_format != "verbose_json":
        raise ApiError(400, "word timestamps come in response_format 'verbose_json'", param="timestamp_granularities[]")
    if (_text(form, "stream") or "false").lower() not in ("false", "0"):
        raise ApiError(400, "streaming responses are not supported; leave 'stream' out", param="stream")
    language = _language(_text(form, "language"), generation_config)
    temperatures = _ladder(_text(form, "temperature"))
    options = dataclasses.replace(defaults, language=language, task=task, timestamps=response_format in TIMED_FORMATS,
                                  temperatures=temperatures if defaults.fallback else temperatures[:1],
                                  prompt=_text(form, "prompt") or None, word_timestamps="word" in granularities)
    try:
        check_options(generation_config, options)
    except ValueError as error:
        raise ApiError(400, str(error), param="language" if task == "transcribe" else None) from None
    return AudioRequest(upload.filename or "audio", upload_bytes(upload), options, response_format)


def upload_bytes(upload) -> bytes:
    """The bytes of an upload Starlette has spooled (in memory, or an unlinked temporary file)."""
    upload.file.seek(0)
    return upload.file.read()


def decode_audio(filename: str, data: bytes, max_seconds: float | None) -> np.ndarray:
    """16 kHz mono float32 samples of an uploaded file (anything libsndfile or FFmpeg reads)."""
    if not data:
        raise ApiError(400, f"{filename}: the file is empty", param="file")
    try:
        samples, rate = read_samples(data, filename)
        if max_seconds is not None and len(samples) / rate > max_seconds:
            raise ApiError(413, f"{filename}: {len(samples) / rate:.0f} s of audio; this server takes at most "
                                f"{max_seconds:g} s per request", param="file", code="audio_too_long")
        return prepare_samples(samples, rate, SAMPLE_RATE, source=filename)
    except (AudioError, ValueError) as error:
        detail = str(error).removeprefix(f"{filename}: ")
        raise ApiError(400, f"{filename}: cannot decode the audio ({detail})", param="file",
                       code="invalid_audio") from None


def _text(form, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{name!r} must be a plain form field, not a file", param=name)
    return value.strip()


def _language(language: str | None, generation_config) -> str | None:
    if not language:
        return None
    language = language.lower()
    if not is_multilingual(generation_config):
        return language  # check_options refuses anything but English, with the model's reason
    if f"<|{language}|>" not in (getattr(generation_config, "lang_to_id", None) or {}):
        raise ApiError(400, f"language {language!r} is not one this model knows; give an ISO-639-1 code "
                            "such as 'en', 'de', 'fr'", param="language")
    return language


def _ladder(temperature: str | None) -> tuple[float, ...]:
    """OpenAI's temperature: 0 (the default) lets Whisper raise it when a window fails; T starts there."""
    if not temperature:
        return WHISPER_TEMPERATURES
    try:
        value = float(temperature)
    except ValueError:
        raise ApiError(400, f"temperature {temperature!r} is not a number", param="temperature") from None
    if not 0.0 <= value <= 1.0:
        raise ApiError(400, f"temperature must be between 0 and 1, got {value:g}", param="temperature")
    return (value,) + tuple(t for t in WHISPER_TEMPERATURES if t > value + 1e-9)
