"""Whisper's tokenizer and generation config from a faster-whisper folder's `tokenizer.json`."""

from __future__ import annotations

from pathlib import Path

from tokenizers import AddedToken
from transformers import GenerationConfig, WhisperTokenizerFast

from lite_whisper.models.ctranslate2.format import read_json

_CONTROL_TOKENS = ("<|endoftext|>", "<|startoftranscript|>", "<|translate|>", "<|transcribe|>",
                   "<|startoflm|>", "<|startofprev|>", "<|notimestamps|>")
_NO_SPEECH_TOKENS = ("<|nospeech|>", "<|nocaptions|>")  # renamed in large-v3
_MULTILINGUAL_MIN_VOCAB = 51865  # English-only models have 51864 tokens


def build_tokenizer(path: Path, vocab_size: int):
    """A `WhisperTokenizerFast` from faster-whisper's `tokenizer.json`.

    transformers 5 takes the first timestamp id as `all_special_ids[-1] + 1`, so the control
    tokens are registered as extra special tokens ending with `<|notimestamps|>`, and the
    timestamp tokens (missing from some tokenizer.json files) are added as plain tokens.
    """

    if not path.is_file():
        raise ValueError(f"{path.parent}: no tokenizer.json (needed for the vocabulary and special tokens)")
    added = {token["content"]: token["id"] for token in read_json(path).get("added_tokens", [])}
    missing = [t for t in ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>") if t not in added]
    if missing:
        raise ValueError(f"{path}: missing Whisper control tokens {missing}")
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(path), extra_special_tokens=_control_tokens(added))
    first_timestamp = added["<|notimestamps|>"] + 1
    if len(tokenizer) < vocab_size:
        count = vocab_size - first_timestamp
        tokenizer.add_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False, special=False) for i in range(count)])
    if len(tokenizer) != vocab_size or tokenizer.convert_tokens_to_ids("<|0.00|>") != first_timestamp:
        raise ValueError(f"{path}: tokenizer ({len(tokenizer)} tokens) does not match the model ({vocab_size})")
    return tokenizer


def _control_tokens(added: dict[str, int]) -> list[str]:
    """Every added token after <|endoftext|> through <|notimestamps|>, in id order (languages included)."""
    start, end = added["<|endoftext|>"], added["<|notimestamps|>"]
    by_id = {i: t for t, i in added.items() if start <= i <= end}
    if sorted(by_id) != list(range(start, end + 1)):
        raise ValueError("tokenizer.json: the control token ids are not contiguous")
    return [by_id[i] for i in range(start + 1, end + 1)]  # <|endoftext|> is already bos/eos/unk


def _language_tokens(vocab: dict[str, int]) -> dict[str, int]:
    """Language tokens sit between <|startoftranscript|> and <|translate|>."""
    sot, translate = vocab["<|startoftranscript|>"], vocab["<|translate|>"]
    return {t: i for t, i in sorted(vocab.items(), key=lambda kv: kv[1]) if sot < i < translate}


def generation_config(config, tokenizer, settings: dict):
    """Match the layout of openai/whisper-* `generation_config.json`.

    English-only models get no `lang_to_id`/`task_to_id`: with them, transformers would run
    language detection and insert a language token that tiny.en was never trained with.
    """

    vocab = tokenizer.get_vocab()
    ids = {t: vocab.get(t) for t in _CONTROL_TOKENS + _NO_SPEECH_TOKENS}
    multilingual = config.vocab_size >= _MULTILINGUAL_MIN_VOCAB
    generation = GenerationConfig(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        max_length=config.max_target_positions,
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        is_multilingual=multilingual,
        suppress_tokens=list(settings.get("suppress_ids", [])),
        begin_suppress_tokens=list(settings.get("suppress_ids_begin", [220, config.eos_token_id])),
        max_initial_timestamp_index=50,
        return_timestamps=False,
        forced_decoder_ids=None,
    )
    if "alignment_heads" in settings:
        generation.alignment_heads = [list(pair) for pair in settings["alignment_heads"]]
    if multilingual:
        generation.lang_to_id = _language_tokens(vocab)
        generation.task_to_id = {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}
    return generation
