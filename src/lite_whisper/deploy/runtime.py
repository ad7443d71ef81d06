"""Run an exported folder: ONNX Runtime or OpenVINO encodes, CTranslate2 decodes, the transformers processor makes features.

`lite_whisper.load_model(DIR)` returns an `ExportedWhisper` and its processor, which
`transcribe` and `evaluate` accept like any model: clips up to 30 s are batched through the two
engines (greedy or beam search, the same no-speech rule as the PyTorch path); longer clips and
timestamps go through faster-whisper's own pipeline with the same encoder (`LiteWhisperModel`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lite_whisper.data.audio import SAMPLE_RATE
from lite_whisper.deploy.manifest import read_manifest


class ExportedWhisper:
    """An exported model: `encode` (ONNX Runtime or OpenVINO) and `decode_short` / `decode_long` (CTranslate2).

    `encoder`: which encoder runs, 'auto' (default), 'float32', 'int8' or 'bfloat16'
    (`lite_whisper.deploy.encoders`). `threads`: cores for both engines (default: the manifest's,
    else the engines' own choice).
    """

    is_exported = True

    def __init__(self, folder: str | Path, *, encoder: str | None = "auto", threads: int | None = None,
                 decoder: str | Path | None = None):
        from transformers import GenerationConfig, WhisperConfig

        from lite_whisper.deploy.faster_whisper import LiteWhisperModel

        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        threads = threads if threads is not None else self.manifest.get("threads")
        self.pipeline = LiteWhisperModel(self.folder, encoder=encoder, cpu_threads=threads or 0, decoder=decoder)
        self.encoder = self.pipeline.lite_encoder
        self.decoder = self.pipeline.model  # ctranslate2.models.Whisper
        self.generation_config = GenerationConfig.from_pretrained(self.folder)
        self.config = WhisperConfig.from_pretrained(self.folder)
        self.config._name_or_path = str(self.folder)
        self.encoder_kind = self.pipeline.encoder_kind

    @property
    def device(self):
        import torch

        return torch.device("cpu")

    def __repr__(self) -> str:
        return f"ExportedWhisper({str(self.folder)!r}, encoder={self.encoder_kind})"

    def encode(self, features: np.ndarray) -> np.ndarray:
        return self.encoder(features)

    def generate(self, encoded: np.ndarray, prompt: list[int], options) -> list:
        """CTranslate2 generation from encoder states for every clip of the batch (the same prompt)."""
        import ctranslate2

        states = ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded, dtype=np.float32))
        # CTranslate2 generates at most min(max_length / 2, max_length - prompt) tokens (OpenAI's
        # 224-token sampling cap, CTranslate2 issue 1856): ask for twice the new tokens wanted
        wanted = options.max_new_tokens or 224
        max_length = min(448, 2 * wanted, wanted + 448 - len(prompt))
        return self.decoder.generate(states, [prompt] * encoded.shape[0], beam_size=options.beam_size,
                                     max_length=max_length, return_scores=True, return_no_speech_prob=True,
                                     suppress_blank=True, suppress_tokens=[-1])

    def decode_short(self, processor, batch: list[tuple[str, np.ndarray]], options):
        """Transcriptions of clips of at most 30 s, batched, without timestamps."""
        from lite_whisper.inference.transcribe import Transcription, decoder_prompt

        if not batch:
            return []
        if options.timestamps:
            return [self.decode_long(processor, name, samples, options) for name, samples in batch]
        features = processor.feature_extractor([samples for _, samples in batch], sampling_rate=SAMPLE_RATE,
                                               return_tensors="np").input_features
        encoded = self.encode(features)
        prompt = decoder_prompt(self, options)
        if getattr(self.generation_config, "is_multilingual", False) and options.language is None:
            prompt = self._with_detected_language(encoded, prompt, options)
        results = self.generate(encoded, prompt, options)
        transcriptions = []
        for (name, samples), result in zip(batch, results):
            tokens = result.sequences_ids[0]
            mean_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)  # faster-whisper's average, EOT counted
            quiet = options.no_speech_threshold is not None and result.no_speech_prob > options.no_speech_threshold \
                and (mean_logprob < options.logprob_threshold or result.no_speech_prob > options.certain_no_speech)
            text = "" if quiet else processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()
            transcriptions.append(Transcription(name, text, len(samples) / SAMPLE_RATE))
        return transcriptions

    def _with_detected_language(self, encoded: np.ndarray, prompt: list[int], options) -> list[int]:
        """Multilingual models without a language: detect it from the first clip (the batch shares a prompt)."""
        import ctranslate2

        detected = self.decoder.detect_language(ctranslate2.StorageView.from_array(encoded[:1]))[0][0][0]
        language = self.generation_config.lang_to_id.get(detected)
        return prompt[:1] + [language] + prompt[1:] if language is not None else prompt

    def decode_long(self, processor, name: str, samples: np.ndarray, options):
        """One clip of any length through faster-whisper's sequential pipeline (timestamps, 30 s windows)."""
        from lite_whisper.inference.transcribe import Segment, Transcription

        segments, _ = self.pipeline.transcribe(
            samples, language=options.language if getattr(self.generation_config, "is_multilingual", False) else None,
            task=options.task, beam_size=options.beam_size, temperature=0.0, without_timestamps=False,
            condition_on_previous_text=False,
            no_speech_threshold=options.no_speech_threshold if options.no_speech_threshold is not None else 1.0,
            log_prob_threshold=options.logprob_threshold)
        parts = [Segment(float(s.start), float(s.end), s.text.strip()) for s in segments]
        return Transcription(name, " ".join(part.text for part in parts if part.text).strip(),
                             len(samples) / SAMPLE_RATE, parts if options.timestamps else [])
