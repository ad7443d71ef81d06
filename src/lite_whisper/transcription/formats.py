"""A transcription as text in every form users ask for: the response formats of OpenAI's audio API (json, text,
srt, vtt, verbose_json) for the server, and the files openai-whisper writes (txt, srt, vtt, tsv, json) for
`transcribe --output-format`."""

from __future__ import annotations

import json

from lite_whisper.transcription.policy import compression_ratio
from lite_whisper.transcription.types import Segment, Transcription

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
# openai-whisper's output files (extension -> the rendering above that writes it; tsv: start and end in ms)
FILE_FORMATS = {"txt": "text", "srt": "srt", "vtt": "vtt", "tsv": "tsv", "json": "verbose_json"}
TIMED_FORMATS = ("srt", "vtt", "verbose_json")  # these need segment timestamps
MEDIA_TYPES = {"json": "application/json", "verbose_json": "application/json", "text": "text/plain; charset=utf-8",
               "srt": "application/x-subrip; charset=utf-8", "vtt": "text/vtt; charset=utf-8",
               "tsv": "text/tab-separated-values; charset=utf-8"}


def render(result: Transcription, response_format: str, *, task: str, language: str | None) -> tuple[str, str]:
    """(body, media type) of `result` in `response_format`."""
    if response_format == "json":
        body = json.dumps({"text": result.text}, ensure_ascii=False)
    elif response_format == "text":
        body = result.text + "\n"
    elif response_format == "srt":
        body = "".join(f"{index}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text}\n\n"
                       for index, s in enumerate(segments(result), start=1))
    elif response_format == "vtt":
        body = "WEBVTT\n\n" + "".join(f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text}\n\n"
                                      for s in segments(result))
    elif response_format == "tsv":
        body = "start\tend\ttext\n" + "".join(
            f"{round(s.start * 1000)}\t{round(s.end * 1000)}\t{s.text.replace(chr(9), ' ')}\n" for s in segments(result))
    elif response_format == "verbose_json":
        body = json.dumps({
            "task": task, "language": language, "duration": round(result.seconds, 3), "text": result.text,
            "segments": [{"id": index, "seek": int(round(s.start * 100)), "start": s.start, "end": s.end,
                          "text": s.text, "tokens": list(s.tokens), "compression_ratio": compression_ratio(s.text), "avg_logprob": s.avg_logprob,
                          "no_speech_prob": s.no_speech_prob, "temperature": s.temperature}
                         for index, s in enumerate(segments(result))],
            **({"words": [{"word": w.word.strip(), "start": w.start, "end": w.end, "probability": w.probability}
                          for w in result.words]} if result.words else {}),
        }, ensure_ascii=False)
    else:
        raise ValueError(f"unknown response format {response_format!r}")
    return body, MEDIA_TYPES[response_format]


def segments(result: Transcription) -> list[Segment]:
    """The segments of `result`; text without timestamps is one segment over the whole clip."""
    if result.segments:
        return [s for s in result.segments if s.text]
    return [Segment(0.0, result.seconds, result.text)] if result.text else []


def _clock(seconds: float, decimal: str) -> str:
    milliseconds = int(round(max(seconds, 0.0) * 1000))
    hours, rest = divmod(milliseconds, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{decimal}{rest % 1000:03d}"
