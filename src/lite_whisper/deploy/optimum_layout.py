"""`export --format optimum`: the folder optimum's ORTModelForSpeechSeq2Seq and transformers.js read.

    DIR/
      config.json                 plain Whisper (model_type "whisper": no remote code anywhere)
      generation_config.json, preprocessor_config.json, tokenizer files
      onnx/encoder_model.onnx                 float32, low-rank linears as two MatMuls
      onnx/decoder_model_merged.onnx          optimum's merged decoder (deploy.onnx_decoder)
      onnx/encoder_model_quantized.onnx       int8 weights: transformers.js's "q8" (its default for WASM)
      onnx/decoder_model_merged_quantized.onnx
      lite_whisper_export.json    what was exported and the parity figures
      README.md                   the model card

The encoder is the graph `export` writes (its attention as ONNX Runtime's fused contrib
`MultiHeadAttention`, which onnxruntime-node and onnxruntime-web both carry); the int8 encoder is
quantised the same way too (activation smoothing, MatMuls past the error bound left float32).
Parity is checked before the folder appears: the float32 encoder within `FP32_TOLERANCE` of
PyTorch, and greedy transcripts of the parity clips through the folder against lite-whisper's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch

from lite_whisper.deploy.export import (FP32_TOLERANCE, ParityError, package_versions, parity_features,
                                        quantize_exported_encoder, relative_error)
from lite_whisper.deploy.onnx_decoder import export_decoder
from lite_whisper.deploy.onnx_graph import export_encoder
from lite_whisper.export_manifest import MANIFEST_FILE, OPTIMUM_FORMAT
from lite_whisper.files import atomic_folder
from lite_whisper.lowrank.convert import dense_config
from lite_whisper.lowrank.cost import decoder_params, encoder_of, encoder_params
from lite_whisper.memory import peak_rss_mb
from lite_whisper.models.model_card import write_model_card
from lite_whisper.runtime.optimum_onnx import (DECODER_FILE, ENCODER_FILE, ONNX_FOLDER, OptimumOnnxWhisper,
                                               onnx_file)
from lite_whisper.runtime.pytorch import PyTorchEngine
from lite_whisper.transcription.engine import transcribe_clips
from lite_whisper.transcription.policy import decoder_prompt
from lite_whisper.transcription.types import DecodingOptions

# one ONNX file each, no external data: protobuf's 2 GB limit, with room for the graph (medium fits;
# large-v3's encoder and decoder do not)
MAX_PART_BYTES = 1_800_000_000


def check_exportable(model) -> None:
    """Refuse, before any work, a model whose encoder or decoder would not fit one ONNX file."""
    for part, params in (("encoder", encoder_params(model)), ("decoder", decoder_params(model))):
        if 4 * params > MAX_PART_BYTES:
            raise ValueError(f"the {part} has {params / 1e6:.0f}M parameters ({4 * params / 1e9:.1f} GB in float32): "
                             "--format optimum writes single-file ONNX graphs (up to ~1.8 GB, Whisper medium); "
                             "export larger models with the default format")


def export_optimum(
    model,
    processor,
    folder: str | Path,
    *,
    source: str = "",
    parity_audio: Sequence[tuple[str, np.ndarray]] = (),
    calibration_audio: Sequence[tuple[str, np.ndarray]] = (),
    overwrite: bool = False,
    min_int8_inner: int = 0,
    int8_max_error: float | None = 0.05,
    int8_smoothing: float | None = 0.5,
    parity_max_new_tokens: int | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    """Write the optimum / transformers.js folder for `model` (float32, dense or low-rank) atomically;
    return its manifest."""
    check_exportable(model)
    start = time.perf_counter()
    with atomic_folder(folder, overwrite=overwrite) as staging:
        (staging / ONNX_FOLDER).mkdir()
        encoder_path = onnx_file(staging, ENCODER_FILE)
        log("exporting the encoder to ONNX ...")
        export_encoder(model, encoder_path, external_data_bytes=MAX_PART_BYTES)
        log("quantising the encoder's weights to int8 ...")
        excluded, int8_report = quantize_exported_encoder(
            model, processor, encoder_path, onnx_file(staging, ENCODER_FILE, quantized=True),
            calibration_audio or parity_audio, int8_max_error, int8_smoothing, min_int8_inner, MAX_PART_BYTES, log)
        for quantized in (False, True):
            _rename_axes(onnx_file(staging, ENCODER_FILE, quantized), {"batch": "batch_size"})
        log("exporting the decoder (optimum's merged graph, float32 and int8) ...")
        export_decoder(model, onnx_file(staging, DECODER_FILE), onnx_file(staging, DECODER_FILE, quantized=True))
        dense_config(model.config).save_pretrained(staging)
        model.generation_config.save_pretrained(staging)
        processor.save_pretrained(staging)
        processor.feature_extractor.save_pretrained(staging)
        _portable_tokenizer_config(staging / "tokenizer_config.json")

        log("checking parity with the PyTorch model ...")
        parity = _parity(model, processor, staging, parity_audio, parity_max_new_tokens)
        if parity["encoder_relative_error_float32"] > FP32_TOLERANCE:
            raise ParityError(f"the float32 ONNX encoder differs from PyTorch by {parity['encoder_relative_error_float32']:.2e} "
                              f"(relative; tolerance {FP32_TOLERANCE:g}); not exporting")
        manifest = {
            "format": OPTIMUM_FORMAT, "source_model": source or str(model.config._name_or_path),
            "versions": package_versions(),
            "files": sorted(str(p.relative_to(staging)) for p in (staging / ONNX_FOLDER).iterdir()),
            "encoder": {"params": encoder_params(model),
                        "low_rank": getattr(model.config, "low_rank_config", None) is not None,
                        "int8_float32_matmuls": excluded, "int8_max_error": int8_max_error, **int8_report},
            "parity": parity,
            "export_seconds": round(time.perf_counter() - start, 1),
            "export_peak_rss_mb": round(peak_rss_mb()),
        }
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        write_model_card(staging, model, source=manifest["source_model"], export=manifest, final=folder)
    return manifest


def _rename_axes(path: Path, names: dict[str, str]) -> None:
    """Rename symbolic axes of a graph's inputs, outputs and intermediate values (optimum's axis names)."""
    model = onnx.load(str(path))
    graph = model.graph
    for value in (*graph.input, *graph.output, *graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]
    onnx.save(model, str(path))


def _portable_tokenizer_config(path: Path) -> None:
    """transformers 5 writes the special tokens as an `extra_special_tokens` list, which transformers 4
    (what optimum-onnx pins) cannot read; `additional_special_tokens` both read."""
    config = json.loads(path.read_text())
    if isinstance(config.get("extra_special_tokens"), list):
        config["additional_special_tokens"] = config.pop("extra_special_tokens")
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def _parity(model, processor, folder: Path, parity_audio, max_new_tokens) -> dict:
    """The encoder's relative error against PyTorch, and greedy transcripts through the folder (float32 and
    int8) against lite-whisper's own (greedy, text mode, English, no silence rule or recovery: the same loop)."""
    clips = list(parity_audio)
    features = parity_features(processor, clips, max(len(clips), 3))  # random audio when no clips are given
    with torch.inference_mode():
        reference = encoder_of(model)(torch.from_numpy(features[:3])).last_hidden_state.numpy()
    parity = {"clips": reference.shape[0]}
    runs = {"float32": OptimumOnnxWhisper(folder), "int8": OptimumOnnxWhisper(folder, quantized=True)}
    for kind, run in runs.items():
        parity[f"encoder_relative_error_{kind}"] = relative_error(
            run.encoder.run(None, {"input_features": features[:3]})[0], reference)
    if not clips:
        return parity
    options = DecodingOptions(language="en", max_new_tokens=max_new_tokens, no_speech_threshold=None,
                              recover_early_end=False)
    expected = [t.text for t in transcribe_clips(PyTorchEngine(model, processor), clips, options=options)]
    parity["transcripts_lite_whisper"] = expected
    prompt = decoder_prompt(model.generation_config, options)
    for kind, run in runs.items():
        texts = [processor.tokenizer.decode(ids, skip_special_tokens=True).strip()
                 for i in range(0, len(clips), 4)
                 for ids in run.generate(features[i: i + 4], prompt, max_new_tokens)]
        parity[f"transcripts_{kind}"] = texts
        parity[f"transcripts_identical_{kind}"] = sum(a.strip() == b for a, b in zip(expected, texts))
    return parity
