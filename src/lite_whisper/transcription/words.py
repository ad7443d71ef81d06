"""Word timestamps from a token-to-frame alignment: which tokens make a word, and when each word starts and ends.

The alignment (pairs of text-token index and encoder frame, 20 ms each, from dynamic time warping over the
decoder's cross-attention alignment heads) comes from the engine; CTranslate2's `align` computes it for the
exported and hybrid engines, as faster-whisper does. What is done with it here follows openai-whisper and
faster-whisper: a word starts at the frame where the warping path reaches its first token and ends where
it reaches the next word's; punctuation joins the word it belongs to.
"""

from __future__ import annotations

import numpy as np

from lite_whisper.transcription.types import Word

FRAMES_PER_SECOND = 50  # encoder frames: 1500 per 30 s window
# openai-whisper's defaults: these join the following / the preceding word
PREPENDED = "\"'“¿([{-"
APPENDED = "\"'.。,，!！?？:：”)]}、"


def split_words(tokenizer, tokens: list[int]) -> tuple[list[str], list[list[int]]]:
    """The words of `tokens` (text tokens only) and the tokens of each: a word starts at a token that begins
    with a space or is punctuation (languages written with spaces; others split token by token)."""
    words: list[str] = []
    groups: list[list[int]] = []
    for token in tokens:
        piece = tokenizer.decode([token])
        if not words or piece.startswith(" ") or piece.strip() in APPENDED + PREPENDED:
            words.append(piece)
            groups.append([token])
        else:
            words[-1] += piece
            groups[-1].append(token)
    return words, groups


def word_times(tokenizer, tokens: list[int], alignment: list[tuple[int, int]], probabilities: list[float] | None,
               offset: float = 0.0) -> list[Word]:
    """Words of `tokens` timed by `alignment` ((token index, frame) pairs along the warping path, over the tokens
    and then end of text), shifted by `offset` seconds; punctuation merged into its word."""
    if not tokens or not alignment:
        return []
    words, groups = split_words(tokenizer, tokens)
    text_indices = np.array([pair[0] for pair in alignment])
    time_indices = np.array([pair[1] for pair in alignment])
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] / FRAMES_PER_SECOND  # when the path reaches each token (and end of text)
    boundaries = np.pad(np.cumsum([len(group) for group in groups]), (1, 0))
    if len(jump_times) <= boundaries[-1]:  # an alignment that does not reach the end of text: nothing to trust
        return []
    probabilities = list(probabilities) if probabilities is not None else [float("nan")] * len(tokens)
    timed = [{"word": word, "start": float(jump_times[first]), "end": float(jump_times[last]),
              "probability": float(np.mean(probabilities[first:last])) if last > first else float("nan")}
             for word, first, last in zip(words, boundaries[:-1], boundaries[1:])]
    _merge_punctuation(timed)
    return [Word(round(offset + w["start"], 3), round(offset + w["end"], 3), w["word"], w["probability"])
            for w in timed if w["word"]]


def _merge_punctuation(timed: list[dict]) -> None:
    """Opening marks join the word after them, closing marks the word before; the words keep their own times
    (faster-whisper's rule)."""
    for index in range(len(timed) - 2, -1, -1):
        word, following = timed[index], timed[index + 1]
        if word["word"].startswith(" ") and word["word"].strip() in PREPENDED and following["word"]:
            following["word"] = word["word"] + following["word"]
            word["word"] = ""
    keep = 0
    for index in range(1, len(timed)):
        word = timed[index]
        if word["word"] and word["word"] in APPENDED and timed[keep]["word"] and not timed[keep]["word"].endswith(" "):
            timed[keep]["word"] += word["word"]
            word["word"] = ""
        elif word["word"]:
            keep = index
