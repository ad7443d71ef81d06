"""Long recordings as Whisper windows: where the speech is (Silero VAD), how it packs into windows of at
most 30 s, and how the windows' transcripts map back onto the file's clock.

Written once for every engine: the windows of one file, and of several files, are ordinary clips of at
most 30 s that `transcription.engine` batches through `features` / `encode` / `decode` like any other.
The VAD is the Silero model faster-whisper ships (`faster_whisper.vad`, run by ONNX Runtime); what lies
between windows is never decoded, so nothing is transcribed from the silence or noise there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from lite_whisper.data.audio import SAMPLE_RATE, WINDOW_SECONDS
from lite_whisper.transcription.types import Segment, Transcription, Word

# Silero's settings: speech above 0.5, a pause of 160 ms ends a region, 400 ms of padding each side
# (faster-whisper's batched pipeline uses the same); regions are cut at a pause before 30 s
VAD_THRESHOLD = 0.5
MIN_SILENCE_MS = 160
SPEECH_PAD_MS = 400


@dataclass(frozen=True)
class Window:
    """Samples [start, end) of a recording, decoded as one Whisper window."""

    start: int
    end: int

    @property
    def seconds(self) -> tuple[float, float]:
        return self.start / SAMPLE_RATE, self.end / SAMPLE_RATE


def speech_regions(samples: np.ndarray) -> list[tuple[int, int]]:
    """Sample ranges [start, end) that Silero VAD hears as speech, padded, in order, each at most 30 s."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(threshold=VAD_THRESHOLD, min_silence_duration_ms=MIN_SILENCE_MS,
                         speech_pad_ms=SPEECH_PAD_MS, max_speech_duration_s=WINDOW_SECONDS)
    return [(int(r["start"]), int(r["end"])) for r in get_speech_timestamps(samples, options)]


def plan_windows(regions: list[tuple[int, int]], max_samples: int = int(WINDOW_SECONDS * SAMPLE_RATE)
                 ) -> list[Window]:
    """Consecutive speech regions packed greedily into windows of at most `max_samples`, each from its first
    region's start to its last region's end (the pauses inside a window stay; those between windows go). A
    region longer than a window (VAD found no pause) is cut into equal parts."""
    windows: list[Window] = []
    for start, end in sorted(regions):
        if end <= start:
            continue
        if windows and end - windows[-1].start <= max_samples and start >= windows[-1].start:
            windows[-1] = Window(windows[-1].start, max(end, windows[-1].end))
            continue
        parts = -(-(end - start) // max_samples)
        bounds = np.linspace(start, end, parts + 1).round().astype(int)
        windows.extend(Window(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]))
    return windows


def assemble(name: str, n_samples: int, windows: list[Window], parts: list[Transcription],
             timestamps: bool) -> Transcription:
    """The recording's transcription from its windows' (`parts`, each timed from its window's start): texts
    joined, segments and words moved onto the recording's clock, each inside its window and after the one
    before."""
    texts = [part.text.strip() for part in parts if part.text.strip()]
    segments: list[Segment] = []
    words: list[Word] = []
    for window, part in zip(windows, parts):
        first, last = window.seconds
        for timed, items in ((part.segments if timestamps else [], segments), (part.words, words)):
            for item in timed:
                moved = dataclasses.replace(item, start=first + item.start, end=first + item.end)
                items.append(clamp(moved, first, last, after=items[-1].end if items else 0.0))
    return Transcription(name, " ".join(texts), n_samples / SAMPLE_RATE, segments, words)


def clamp(segment, first: float, last: float, after: float = 0.0):
    """`segment` (a Segment or a Word) inside [max(first, after), last], start <= end, times in whole milliseconds (no float noise
    such as 6.640000000000001; Whisper's own resolution is 20 ms)."""
    low = max(first, after)
    start = min(max(segment.start, low), last)
    end = min(max(segment.end, start), last)
    return dataclasses.replace(segment, start=round(start, 3), end=round(end, 3))
