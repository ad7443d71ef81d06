"""What transcription is, in values: decoding options, segments, transcriptions, decoded windows.

A leaf (torch-free), imported by every engine and everything that transcribes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from lite_whisper.data.audio import WINDOW_SECONDS

__all__ = ["WINDOW_SECONDS", "Decoded", "DecodingOptions", "Segment", "Transcription"]


@dataclass(frozen=True)
class DecodingOptions:
    language: str | None = None  # None: the model detects it (multilingual models)
    task: str = "transcribe"  # or "translate"
    beam_size: int = 1  # 1 = greedy
    timestamps: bool = False
    max_new_tokens: int | None = None
    # Whisper's (and faster-whisper's) silence rule: a clip whose <|nospeech|> probability exceeds
    # no_speech_threshold and whose mean token log-probability is below logprob_threshold is
    # empty. Small models also hallucinate confidently on silence and hum (tiny.en: " you" at
    # log-prob -0.5, with P(no speech) 0.95), so a probability above certain_no_speech is enough on
    # its own (measured: dev-split speech stays below 0.25 on tiny.en). None turns it all off.
    no_speech_threshold: float | None = 0.6
    logprob_threshold: float = -1.0
    certain_no_speech: float = 0.8

    def __post_init__(self):
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {self.task!r}")
        if self.beam_size < 1:
            raise ValueError(f"beam size must be at least 1, got {self.beam_size}")
        if self.no_speech_threshold is not None and not 0.0 <= self.no_speech_threshold <= 1.0:
            raise ValueError(f"no-speech threshold must be between 0 and 1, got {self.no_speech_threshold}")


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcription:
    source: str
    text: str
    seconds: float
    segments: list[Segment] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Decoded:
    """One window as an engine decoded it: the new tokens (no prompt) and what the silence rule reads.

    `no_speech_prob` and `mean_logprob` are None when the engine did not score the window
    (the silence rule off, or a vocabulary without <|nospeech|>).
    """

    tokens: list[int]
    no_speech_prob: float | None = None
    mean_logprob: float | None = None
