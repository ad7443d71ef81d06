"""Decoding with CTranslate2 from encoder states: the part of an engine that any encoder can feed.

The exported-folder engine (ONNX Runtime / OpenVINO encoder) and the hybrid engine (PyTorch encoder,
graphed on a GPU) both hand their encoder's states to a CTranslate2 Whisper decoder: the prompt,
language detection, suppression, sampling and the scores the silence rule and the fallback read are
the same, so they live here once.
"""

from __future__ import annotations

import ctranslate2

from lite_whisper.transcription.engine import EngineBase
from lite_whisper.transcription.policy import decoder_prompt, forced_suppression, is_multilingual, previous_tokens
from lite_whisper.transcription.types import Decoded, DecodingOptions

# CTranslate2 generates at most min(max_length / 2, max_length - prompt + 1) tokens (OpenAI's 224-token
# sampling cap, CTranslate2 issue 1856); Whisper's decoder holds 448 positions.
MAX_LENGTH = 448


class CTranslate2Decoding(EngineBase):
    """`decode` for an engine with `decoder` (ctranslate2.models.Whisper), `generation_config`, `tokenizer`, and
    `storage(encoded)`, which hands a batch of encoder states to CTranslate2 (a StorageView)."""

    aligns_words = True  # CTranslate2's `align` over the alignment heads

    def storage(self, encoded) -> ctranslate2.StorageView:
        raise NotImplementedError("an engine decoding with CTranslate2 says how its encoder states reach it")

    def decode(self, encoded, options: DecodingOptions) -> list[Decoded]:
        prompt = decoder_prompt(self.generation_config, options)
        if is_multilingual(self.generation_config) and options.language is None:
            prompt = self._with_detected_language(encoded, prompt)
        prompt = previous_tokens(self.tokenizer, options) + prompt
        decoded = []
        for result in self.generate(encoded, prompt, options):
            tokens = result.sequences_ids[0]
            mean_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)  # faster-whisper's average, EOT counted
            decoded.append(Decoded(tokens, result.no_speech_prob, mean_logprob))
        return decoded

    def generate(self, encoded, prompt: list[int], options: DecodingOptions) -> list:
        """CTranslate2 generation from encoder states for every clip of the batch (the same prompt; previous text
        first, if any: CTranslate2 returns only the new tokens)."""
        states = self.storage(encoded)
        # CTranslate2 makes min(max_length / 2, max_length - len(prompt) + 1) new tokens (measured); the prompt and
        # all of them must fit the decoder's positions
        wanted = min(options.forced_tokens or options.max_new_tokens or MAX_LENGTH // 2, MAX_LENGTH - len(prompt))
        max_length = min(MAX_LENGTH, max(2 * wanted, wanted + len(prompt) - 1))
        sampling = {}
        if options.temperature > 0:  # one sample from the whole distribution at that temperature
            ctranslate2.set_random_seed(options.seed)
            sampling = {"sampling_temperature": options.temperature, "sampling_topk": 0}
        return self.decoder.generate(states, [prompt] * encoded.shape[0],
                                     beam_size=1 if sampling else options.beam_size,
                                     max_length=max_length, return_scores=True, return_no_speech_prob=True,
                                     suppress_blank=True, suppress_tokens=suppressed_tokens(self.generation_config, options),
                                     **sampling)

    def align(self, encoded, prompt: list[int], tokens: list[list[int]], frames: list[int]
              ) -> list[tuple[list[tuple[int, int]], list[float]]]:
        """(token index, encoder frame) pairs of the warping path and each token's probability, per window:
        CTranslate2's alignment over the model's alignment heads (`transcription.words`). `frames`: each
        window's mel frames of audio (not padding)."""
        results = self.decoder.align(self.storage(encoded), prompt, tokens, frames)
        return [([tuple(pair) for pair in result.alignments], list(result.text_token_probs)) for result in results]

    def _with_detected_language(self, encoded, prompt: list[int]) -> list[int]:
        """Multilingual models without a language: detect it from the first clip (the batch shares a prompt)."""
        detected = self.decoder.detect_language(self.storage(encoded[:1]))[0][0][0]
        language = self.generation_config.lang_to_id.get(detected)
        return prompt[:1] + [language] + prompt[1:] if language is not None else prompt


def suppressed_tokens(generation_config, options: DecodingOptions) -> list[int]:
    """CTranslate2's `suppress_tokens`: Whisper's set (-1), and `forced_suppression`'s when tokens are forced."""
    return [-1] + (forced_suppression(generation_config) if options.forced_tokens else [])
