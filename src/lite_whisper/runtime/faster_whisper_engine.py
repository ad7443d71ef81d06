"""faster-whisper on a CTranslate2 folder: the reference users run today, called here and nowhere else.

`FasterWhisperPipelines` is faster-whisper as its users call it (`transcribe()` clip by clip, or
`BatchedInferencePipeline` with its VAD or with every clip its own segment), with decoding settings
made from lite-whisper's `DecodingOptions`: the benchmarks' baseline contenders are built on it.

`load_engine(MODEL, backend="faster-whisper")` (`lite-whisper serve MODEL --faster-whisper`) converts MODEL
(dense) to CTranslate2 int8 with CTranslate2's own converter and runs it through faster-whisper's
`transcribe()`: a server takes one request at a time (`batches_windows = False`: the scheduler sends every request to `transcribe_long`),
as the faster-whisper servers do. Same decoding rules as the exported engine (it is one, with
CTranslate2's own encoder in place of ours).
"""

from __future__ import annotations

import atexit
import tempfile
from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel
from transformers import GenerationConfig

from lite_whisper.lowrank.cost import has_low_rank
from lite_whisper.models.ctranslate2.decoder import convert_to_ctranslate2
from lite_whisper.data.audio import SAMPLE_RATE
from lite_whisper.models.loading import ModelLoadError
from lite_whisper.runtime.exported import ExportedWhisper, pipeline_limits
from lite_whisper.transcription.types import DecodingOptions


class FasterWhisperPipelines:
    """faster-whisper's two pipelines on one CTranslate2 folder, decoding as `options` say (greedy or beam, the
    temperature fallback, the silence rule, forced tokens) without timestamps or previous-text conditioning.

    Each method takes clips (16 kHz float32 arrays) and returns (text, token count) per clip:
      sequential   `WhisperModel.transcribe()` clip by clip (VAD off)
      batched      `BatchedInferencePipeline`, every clip its own segment (`clip_timestamps`), `batch_size` at a time
      batched_vad  `BatchedInferencePipeline` clip by clip with its own Silero VAD, as its users run it on files
    `generation_config`: the source model's (token ids for forced decoding); made from the tokenizer when None.
    """

    def __init__(self, folder: str | Path, *, options: DecodingOptions, device: str = "cpu", compute_type: str = "int8",
                 threads: int | None = None, generation_config=None):
        self.model = faster_whisper_model(folder, device=device, compute_type=compute_type, threads=threads)
        self.pipeline = BatchedInferencePipeline(model=self.model)
        tokenizer = self.model.hf_tokenizer
        generation_config = generation_config or GenerationConfig(
            is_multilingual=self.model.model.is_multilingual, eos_token_id=tokenizer.token_to_id("<|endoftext|>"),
            no_timestamps_token_id=tokenizer.token_to_id("<|notimestamps|>"))
        self.settings = dict(language=(options.language or "en") if self.model.model.is_multilingual else None,
                             beam_size=options.beam_size, temperature=list(options.temperatures),
                             without_timestamps=True, condition_on_previous_text=False,
                             **pipeline_limits(generation_config, options))

    def sequential(self, clips) -> list[tuple[str, int]]:
        return _per_clip(lambda audio: self.model.transcribe(audio, vad_filter=False, **self.settings)[0], clips)

    def batched(self, clips, batch_size: int) -> list[tuple[str, int]]:
        clips = [np.asarray(audio, dtype=np.float32) for audio in clips]
        edges = np.cumsum([0] + [len(audio) for audio in clips]) / SAMPLE_RATE
        spans = [{"start": float(start), "end": float(end)} for start, end in zip(edges, edges[1:])]
        segments = list(self.pipeline.transcribe(np.concatenate(clips), batch_size=batch_size, clip_timestamps=spans,
                                                 vad_filter=False, **self.settings)[0])
        return [(segment.text.strip(), len(segment.tokens)) for segment in segments]

    def batched_vad(self, clips, batch_size: int) -> list[tuple[str, int]]:
        return _per_clip(lambda audio: self.pipeline.transcribe(audio, batch_size=batch_size, vad_filter=True,
                                                                **self.settings)[0], clips)


def faster_whisper_model(folder: str | Path, *, device: str = "cpu", compute_type: str = "int8",
                         threads: int | None = None) -> WhisperModel:
    """faster-whisper's `WhisperModel` on a CTranslate2 folder (`threads` None: CTranslate2's default)."""
    return WhisperModel(str(folder), device=device, compute_type=compute_type, cpu_threads=threads or 0)


def _per_clip(segments_of, clips) -> list[tuple[str, int]]:
    """(the segments' texts joined, their token count) for each clip, `segments_of(audio)` giving its segments."""
    results = []
    for audio in clips:
        segments = list(segments_of(audio))
        results.append((" ".join(segment.text.strip() for segment in segments).strip(),
                        sum(len(segment.tokens) for segment in segments)))
    return results


class FasterWhisperEngine(ExportedWhisper):
    """The CTranslate2 `folder` (e.g. written by `models.ctranslate2.decoder.convert_to_ctranslate2`) as faster-whisper
    runs it, with the `processor` and `generation_config` of the model it came from."""

    batches_windows = False

    def __init__(self, folder: str | Path, processor, generation_config, *, threads: int | None = None,
                 compute_type: str = "int8", name: str | None = None):
        self.folder = Path(folder)
        self.manifest = {}
        self.pipeline = faster_whisper_model(folder, compute_type=compute_type, threads=threads)
        self.decoder = self.pipeline.model
        self.encoder = self._encode_ct2
        self.encoder_kind = f"ctranslate2 {compute_type}"
        self.processor, self.tokenizer = processor, processor.tokenizer
        self.generation_config = generation_config
        self.name = name or f"faster-whisper {compute_type} ({folder})"

    @classmethod
    def from_model(cls, model, processor, *, threads: int | None = None, name: str | None = None):
        """`model` (a dense transformers Whisper model) converted to CTranslate2 int8 by CTranslate2's converter, in a
        scratch folder removed at exit, and run by faster-whisper."""
        if has_low_rank(model):
            raise ModelLoadError("faster-whisper runs dense models: export a compressed one (lite-whisper export) and "
                             "run the folder, which faster-whisper also runs through lite_whisper.runtime.faster_whisper")
        scratch = tempfile.TemporaryDirectory(prefix="lite-whisper-fw-")
        atexit.register(scratch.cleanup)
        folder = convert_to_ctranslate2(model, processor, Path(scratch.name) / "ct2", quantization="int8")
        source = getattr(model.config, "_name_or_path", "") or type(model).__name__
        return cls(folder, processor, model.generation_config, threads=threads,
                   name=name or f"faster-whisper int8 ({source})")

    def __repr__(self) -> str:
        return f"FasterWhisperEngine({self.name!r})"

    def pipeline_without_timestamps(self, options: DecodingOptions) -> bool:
        """Timestamp tokens only when the request wants segments: the same decoding work as the batched path."""
        return not options.timestamps or options.forced_tokens is not None

    def _encode_ct2(self, features: np.ndarray) -> np.ndarray:
        states = self.decoder.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features)), to_cpu=True)
        return np.array(states)
