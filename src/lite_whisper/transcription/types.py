"""What transcription is, in values: decoding options, segments, transcriptions, decoded windows.

A leaf (torch-free), imported by every engine and everything that transcribes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from lite_whisper.data.audio import WINDOW_SECONDS

__all__ = ["WHISPER_TEMPERATURES", "WINDOW_SECONDS", "Decoded", "DecodingOptions", "Segment", "Transcription", "Word"]


LONG_FORMS = ("vad", "sequential")  # how audio over 30 s is walked (DecodingOptions.long_form)

# the most tokens CTranslate2 decodes in one window (OpenAI's sampling cap, half the decoder's 448 positions)
MAX_FORCED_TOKENS = 224


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
    # Whisper's temperature fallback: a window whose text compresses more than
    # compression_ratio_threshold (a repetition loop) or whose mean token log-probability is below
    # logprob_threshold is decoded again by sampling at the next temperature (best of `best_of`
    # samples), unless the silence rule calls it silent. (0.0,) = greedy only, the comparable figure.
    temperatures: tuple[float, ...] = (0.0,)
    compression_ratio_threshold: float = 2.4
    best_of: int = 5
    # text that comes before the audio (Whisper's initial prompt, OpenAI's `prompt`): names, spellings,
    # style; decoded after <|startofprev|>, its last 223 tokens kept
    prompt: str | None = None
    # decode exactly this many tokens per window, end of text suppressed: speed measurements where the
    # text means nothing (random weights); greedy, no timestamps, no fallback, no silence rule
    forced_tokens: int | None = None
    # audio over 30 s: "vad" cuts it at its pauses (Silero VAD) into windows decoded as batches;
    # "sequential" walks it window by window as Whisper does (each from the last timestamp before)
    long_form: str = "vad"
    # a window whose transcript ends while the audio goes on talking (far fewer tokens than its speech) is
    # decoded again with timestamps, going on from the last one, then its speech regions apart
    # (`transcription.early_end`)
    recover_early_end: bool = True
    # when each word starts and ends (cross-attention alignment; engines that decode with CTranslate2)
    word_timestamps: bool = False
    temperature: float = 0.0  # what one `Engine.decode` call uses (set by the fallback loop)
    seed: int = 0  # fixes the samples drawn at temperatures above 0

    def __post_init__(self):
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task must be 'transcribe' or 'translate', got {self.task!r}")
        if self.beam_size < 1:
            raise ValueError(f"beam size must be at least 1, got {self.beam_size}")
        if not self.temperatures or any(not 0.0 <= t <= 2.0 for t in self.temperatures) \
                or list(self.temperatures) != sorted(self.temperatures):
            raise ValueError(f"temperatures must be rising values between 0 and 2, got {self.temperatures}")
        if self.long_form not in LONG_FORMS:
            raise ValueError(f"long form must be one of {', '.join(LONG_FORMS)}, got {self.long_form!r}")
        if self.word_timestamps and (self.long_form == "sequential" or self.forced_tokens is not None):
            raise ValueError("word timestamps come with the VAD long form, not with 'sequential' or forced tokens")
        if self.best_of < 1:
            raise ValueError(f"best-of must be at least 1, got {self.best_of}")
        if self.no_speech_threshold is not None and not 0.0 <= self.no_speech_threshold <= 1.0:
            raise ValueError(f"no-speech threshold must be between 0 and 1, got {self.no_speech_threshold}")
        if self.forced_tokens is not None:
            if not 1 <= self.forced_tokens <= MAX_FORCED_TOKENS:
                raise ValueError(f"forced tokens must be between 1 and {MAX_FORCED_TOKENS}, got {self.forced_tokens}")
            if self.beam_size != 1 or self.timestamps or self.fallback or self.no_speech_threshold is not None \
                    or self.temperature > 0:
                raise ValueError("forced tokens decode greedily, without timestamps, fallback or the silence rule "
                                 "(beam_size=1, timestamps=False, temperatures=(0.0,), no_speech_threshold=None)")


    @property
    def fallback(self) -> bool:
        return len(self.temperatures) > 1


WHISPER_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # Whisper's and faster-whisper's fallback ladder


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    # what decoded its window (OpenAI's verbose_json fields); None where the engine did not score it
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    temperature: float | None = None
    tokens: list[int] = field(default_factory=list)  # the segment's text tokens (verbose_json's `tokens`)


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str  # as Whisper wrote it: leading space, punctuation attached
    probability: float


@dataclass(frozen=True)
class Transcription:
    source: str
    text: str
    seconds: float
    segments: list[Segment] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)  # with DecodingOptions.word_timestamps

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
    temperature: float = 0.0  # the fallback's temperature this decoding came from
