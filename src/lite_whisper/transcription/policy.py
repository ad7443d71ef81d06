"""Whisper's decoding rules, written once for every engine: the prompt (and previous text), English-only models,
the no-speech rule, and turning tokens into text and segments."""

from __future__ import annotations

import zlib

from lite_whisper.data.audio import SAMPLE_RATE
from lite_whisper.transcription.types import Decoded, DecodingOptions, Segment, Transcription

ENGLISH = (None, "en", "english", "English")


def is_multilingual(generation_config) -> bool:
    return bool(getattr(generation_config, "is_multilingual", False))


def check_options(generation_config, options: DecodingOptions) -> None:
    """English-only checkpoints cannot translate or transcribe another language: say so up front."""
    if getattr(generation_config, "is_multilingual", True):
        return
    if options.task == "translate":
        raise ValueError("this model is English-only and cannot translate; use a multilingual model")
    if options.language not in ENGLISH:
        raise ValueError(f"this model is English-only; cannot transcribe language {options.language!r}")


def decoder_prompt(generation_config, options: DecodingOptions) -> list[int]:
    """The tokens decoding starts from: <|startoftranscript|> [language] [task] [<|notimestamps|>]."""
    prompt = [generation_config.decoder_start_token_id]
    if is_multilingual(generation_config):
        lang_to_id = getattr(generation_config, "lang_to_id", {}) or {}
        language = lang_to_id.get(f"<|{options.language}|>") if options.language else None
        if language is not None:
            prompt.append(language)
        task = (getattr(generation_config, "task_to_id", {}) or {}).get(options.task)
        if task is not None:
            prompt.append(task)
    if not options.timestamps:
        prompt.append(generation_config.no_timestamps_token_id)
    return prompt


TIMESTAMP_TOKENS = 1501  # <|0.00|> ... <|30.00|>, right after <|notimestamps|> in every Whisper vocabulary


def forced_suppression(generation_config) -> list[int]:
    """What forced-token decoding never picks: end of text (so every window makes its N tokens) and the
    timestamp tokens (a model told <|notimestamps|> does not make them when trained; a random one does,
    and faster-whisper would then cut the window into segments and decode parts of it again)."""
    eos = generation_config.eos_token_id
    first = generation_config.no_timestamps_token_id + 1
    return [eos[0] if isinstance(eos, list) else eos, *range(first, first + TIMESTAMP_TOKENS)]


MAX_PROMPT_TOKENS = 223  # Whisper keeps the last n_text_ctx // 2 - 1 tokens of previous text


def previous_tokens(tokenizer, options: DecodingOptions) -> list[int]:
    """<|startofprev|> and the prompt's tokens (its last 223), which go before `decoder_prompt`; [] without one."""
    if not options.prompt or not options.prompt.strip():
        return []
    ids = list(tokenizer.get_prompt_ids(options.prompt.strip()))
    return ids[:1] + ids[1:][-MAX_PROMPT_TOKENS:]


def no_speech_token(tokenizer) -> int | None:
    """The id of <|nospeech|> (<|nocaptions|> before large-v3), or None if the vocabulary has neither."""
    for token in ("<|nospeech|>", "<|nocaptions|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            return token_id
    return None


def is_silent(decoded: Decoded, options: DecodingOptions) -> bool:
    """Whisper's rule: P(<|nospeech|>) above the threshold and the mean token log-probability below
    `logprob_threshold` — or P(<|nospeech|>) alone above `certain_no_speech`."""
    p, mean = decoded.no_speech_prob, decoded.mean_logprob
    if options.no_speech_threshold is None or p is None or mean is None:
        return False
    return p > options.no_speech_threshold and (mean < options.logprob_threshold or p > options.certain_no_speech)


def to_transcription(tokenizer, name: str, tokens, n_samples: int, options: DecodingOptions) -> Transcription:
    """Text (and, with timestamps, segments from the timestamp tokens) of one decoded clip."""
    seconds = n_samples / SAMPLE_RATE
    text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
    if not options.timestamps:
        return Transcription(name, text, seconds)
    eos = tokenizer.eos_token_id  # the first special token: text tokens lie below it
    segments = [Segment(start, end, tokenizer.decode(part, skip_special_tokens=True).strip(),
                        tokens=[token for token in part if token < eos])
                for start, end, part in split_segments(tokens, tokenizer.convert_tokens_to_ids("<|0.00|>"))]
    return Transcription(name, text, seconds, segments)


TIME_PRECISION = 0.02  # seconds per timestamp step
WINDOW_POSITIONS = 1500  # timestamp steps in a 30 s window


def split_segments(tokens, first_timestamp: int) -> list[tuple[float, float, list[int]]]:
    """(start s, end s, text tokens) of every segment in a timestamped decoding, as transformers' tokenizer cuts
    them (`_compute_offsets`): a segment runs from a timestamp to the next one that is followed by another or
    ends the tokens; a timestamp lower than the last end starts a new 30 s window (transformers' long-form
    output), whose times go on from the last end (pairs) or from the window's end (a single timestamp)."""
    tokens = [int(token) for token in tokens]
    marks = [index for index, token in enumerate(tokens) if token >= first_timestamp]
    if not marks:
        return []
    cuts = [index + 1 for index in marks[:-1] if tokens[index + 1] >= first_timestamp]
    if not cuts and len(marks) <= 1:
        return []
    if marks[-1] + 1 not in cuts:
        cuts.append(marks[-1] + 1)
    segments, last, latest, offset = [], marks[0], 0, 0
    for cut in cuts:
        piece = tokens[last:cut]
        if len(piece) > 1:
            start, end = piece[0] - first_timestamp, piece[-1] - first_timestamp
            if start < latest:  # a new window
                pair = last >= 2 and tokens[last - 2] >= first_timestamp and tokens[last - 1] >= first_timestamp
                offset += latest if pair else WINDOW_POSITIONS
            latest = end
            text = [token for token in piece if token < first_timestamp]
            segments.append(((start + offset) * TIME_PRECISION, (end + offset) * TIME_PRECISION, text))
        last = cut
    return segments


def compression_ratio(text: str) -> float:
    """UTF-8 bytes / zlib-compressed bytes of `text`, as Whisper computes it (0 for empty text): ordinary
    sentences stay below 2, a repetition loop goes far above."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def needs_fallback(tokenizer, decoded: Decoded, options: DecodingOptions) -> bool:
    """Whisper's test: the window's text compresses like a loop, or its mean log-probability is low —
    unless the silence rule calls it silent (then no sampling can help)."""
    if is_silent(decoded, options):
        return False
    text = tokenizer.decode(decoded.tokens, skip_special_tokens=True)
    if compression_ratio(text) > options.compression_ratio_threshold:
        return True
    return decoded.mean_logprob is not None and decoded.mean_logprob < options.logprob_threshold
