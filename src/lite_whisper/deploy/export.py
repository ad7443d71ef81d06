"""`export`: a model lite-whisper loads -> a folder for ONNX Runtime or OpenVINO (encoder) + CTranslate2 (decoder).

    DIR/
      lite_whisper_export.json   manifest: source, versions, quantisation, parity figures
      encoder.onnx               float32, low-rank linears as two MatMuls, batch dynamic (OpenVINO
                                 runs it in bfloat16 where the CPU has it: deploy.encoders)
      encoder.int8.onnx          int8 weights (--int8), quantised from a copy with smoothed activations and
                                 turned low-rank middles
      decoder/                   CTranslate2 Whisper (int8) with a placeholder encoder; also a faster-whisper folder
      config.json, generation_config.json, tokenizer and preprocessor files

Parity is checked before the folder appears: the encoder's relative error against PyTorch
(float32 must stay within 1e-4) and greedy transcripts of a few clips through the export
against the PyTorch model (reported, identical in float32 with a float32 decoder).
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from lite_whisper import __version__
from lite_whisper.models.model_card import write_model_card
from lite_whisper.data.audio import SAMPLE_RATE
from lite_whisper.models.ctranslate2.decoder import PLACEHOLDER_FFN, write_decoder
from lite_whisper.deploy.int8 import quantize_encoder, quantize_within
from lite_whisper.deploy.int8_sensitivity import output_sensitivity
from lite_whisper.deploy.onnx_graph import EXTERNAL_DATA_BYTES, export_encoder, export_encoder_apart
from lite_whisper.deploy.smoothing import smoothed
from lite_whisper.export_manifest import FORMAT, MANIFEST_FILE, VERSION
from lite_whisper.files import atomic_folder
from lite_whisper.lowrank.convert import dense_config
from lite_whisper.lowrank.cost import encoder_of, encoder_params, has_low_rank
from lite_whisper.memory import peak_rss_mb, return_freed_memory
from lite_whisper.runtime.encoders import open_encoder, runnable_encoders
from lite_whisper.runtime.exported import ExportedWhisper
from lite_whisper.runtime.pytorch import PyTorchEngine
from lite_whisper.transcription.engine import transcribe_clips
from lite_whisper.transcription.types import DecodingOptions

FP32_TOLERANCE = 1e-4  # relative (Frobenius) error of the float32 ONNX encoder against PyTorch
INT8_CALIBRATION_CLIPS = 8  # clips that set the smoothing ranges and the int8 error bound
# above this many encoder parameters (medium, large) 2 clips: each is a PyTorch and an ONNX Runtime run
# per trial (large-v3: ~35 s and ~20 s on 2 cores)
LARGE_ENCODER_PARAMS = 100_000_000
LARGE_ENCODER_CLIPS = 2


class ParityError(ValueError):
    """The exported encoder does not reproduce the PyTorch model."""


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(actual - expected) / max(np.linalg.norm(expected), 1e-30))


def export(
    model,
    processor,
    folder: str | Path,
    *,
    source: str = "",
    int8: bool = False,
    decoder_quantization: str = "int8",
    threads: int | None = None,
    parity_audio: Sequence[tuple[str, np.ndarray]] = (),
    calibration_audio: Sequence[tuple[str, np.ndarray]] = (),
    overwrite: bool = False,
    min_int8_inner: int = 0,
    int8_max_error: float | None = 0.05,
    int8_smoothing: float | None = 0.5,
    parity_max_new_tokens: int | None = None,
    external_data_bytes: int = EXTERNAL_DATA_BYTES,
    release_model: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> dict:
    """Write the exported folder for `model` (float32, dense or low-rank) atomically; return its manifest.

    `int8`: also an int8-weight encoder, with the MatMuls that would push the encoder's relative
    output error past `int8_max_error` left in float32 (`quantize_within`; None: quantise all).
    It is quantised from a copy of the encoder whose low-rank middles are turned and whose activations are
    smoothed first (alpha `int8_smoothing`, None: neither; `smoothing.smoothed`). Smoothing ranges and the error
    bound are measured on `calibration_audio` (the parity clips when none are given; with their own
    clips, the parity figures check the int8 encoder on speech its quantisation did not see).

    Everything PyTorch gives (the float32 graph, reference outputs and transcripts, the decoders, the int8
    copy) is taken first; the parity checks then open one runtime at a time. `release_model`: the model is
    the export's to spend (the command line's own): its encoder is smoothed in place instead of copied and
    every weight is freed (moved to the meta device) before the parity checks, so a large model's export
    never holds the PyTorch weights beside a runtime's (large-v3-turbo: 3.9 GB of PyTorch weights beside
    OpenVINO's 5.2 GB). The model is unusable afterwards.
    """
    start = time.perf_counter()
    encoder = encoder_of(model)
    params, low_rank = encoder_params(model), getattr(model.config, "low_rank_config", None) is not None
    options = DecodingOptions(language=None if getattr(model.generation_config, "is_multilingual", False) else "en",
                              max_new_tokens=parity_max_new_tokens)
    with atomic_folder(folder, overwrite=overwrite) as staging, \
            tempfile.TemporaryDirectory(prefix="lite-whisper-parity-") as scratch:
        log("exporting the encoder to ONNX ...")
        _to_onnx(release_model)(model, staging / "encoder.onnx", external_data_bytes)
        features = parity_features(processor, parity_audio, 3)
        with torch.inference_mode():
            reference = encoder(torch.from_numpy(features)).last_hidden_state.numpy()
        clips = list(parity_audio)
        if clips:
            log(f"transcribing {len(clips)} clips through PyTorch ...")
            pytorch_texts = [t.text for t in transcribe_clips(PyTorchEngine(model, processor), clips, options=options)]
        log(f"converting the decoder to CTranslate2 ({decoder_quantization}) ...")
        write_decoder(model, processor, staging / "decoder", quantization=decoder_quantization)
        # the parity check's float32 decoder, written now: after this no step needs the decoder's PyTorch weights
        float32_decoder = write_decoder(model, processor, Path(scratch) / "decoder", quantization="float32") \
            if clips else None
        dense_config(model.config).save_pretrained(staging)
        model.generation_config.save_pretrained(staging)
        processor.save_pretrained(staging)
        processor.feature_extractor.save_pretrained(staging)
        excluded, int8_report = None, {}
        if int8:
            excluded, int8_report = quantize_exported_encoder(
                model, processor, staging / "encoder.onnx", staging / "encoder.int8.onnx", calibration_audio or parity_audio,
                int8_max_error, int8_smoothing, min_int8_inner, external_data_bytes, log, spend_model=release_model)
        if release_model:
            model.to("meta")  # shapes stay (the model card counts parameters and FLOPs), the memory goes
            return_freed_memory()

        log("checking parity with the PyTorch model ...")
        parity = {"clips": features.shape[0]}
        written = {"encoder": {"float32": "encoder.onnx", "int8": "encoder.int8.onnx" if int8 else None}}
        for kind in runnable_encoders(written):
            parity[f"encoder_relative_error_{kind}"] = relative_error(
                open_encoder(staging, written, kind)(features), reference)
            return_freed_memory()  # one runtime's session at a time
        if parity["encoder_relative_error_float32"] > FP32_TOLERANCE:
            raise ParityError(f"the float32 ONNX encoder differs from PyTorch by {parity['encoder_relative_error_float32']:.2e} "
                              f"(relative; tolerance {FP32_TOLERANCE:g}); not exporting")
        manifest = {
            "format": FORMAT, "version": VERSION, "source_model": source or str(model.config._name_or_path),
            "versions": package_versions(),
            "encoder": {"float32": "encoder.onnx", "int8": "encoder.int8.onnx" if int8 else None,
                        "default": "int8" if int8 else "float32", "int8_float32_matmuls": excluded,
                        "int8_max_error": int8_max_error if int8 else None, **int8_report,
                        "params": params, "low_rank": low_rank},
            "decoder": {"folder": "decoder", "compute_type": decoder_quantization,
                        "placeholder_encoder_params": _placeholder_params(model.config, PLACEHOLDER_FFN)},
            "threads": threads,
            "parity": parity,
            "export_seconds": None,
        }
        _write_manifest(staging, manifest)
        if clips:
            log(f"transcribing {len(clips)} clips through the export ...")
            parity.update(_transcript_parity(staging, clips, pytorch_texts, float32_decoder, threads, options))
        manifest["export_seconds"] = round(time.perf_counter() - start, 1)
        manifest["export_peak_rss_mb"] = round(peak_rss_mb())  # this process's, the model's own memory included
        _write_manifest(staging, manifest)
        write_model_card(staging, model, source=manifest["source_model"], export=manifest, final=folder)
    return manifest


def quantize_exported_encoder(model, processor, source: Path, target: Path, audio, max_error, smoothing, min_inner,
                              external_data_bytes, log, spend_model: bool = False) -> tuple[list[str], dict]:
    """Write the int8 copy of the exported encoder `source` to `target` (smoothed, within `max_error` on
    `audio`); return the MatMuls left float32 and what the manifest records. `spend_model` (`export`'s
    `release_model`): smooth the model's own encoder (the same function after, up to rounding) instead of a copy,
    and export it apart."""
    encoder = encoder_of(model)
    large = encoder_params(model) > LARGE_ENCODER_PARAMS
    features = parity_features(processor, audio, LARGE_ENCODER_CLIPS if large else INT8_CALIBRATION_CLIPS)
    report = {"int8_calibration_clips": features.shape[0], "int8_smoothing": smoothing,
              "int8_rotated_middles": smoothing is not None and has_low_rank(model)}  # what `smoothed` turns
    reference = None
    if max_error is not None:  # the encoder as exported, before any smoothing
        with torch.inference_mode():
            reference = np.concatenate([encoder(torch.from_numpy(features[i: i + 2])).last_hidden_state.numpy()
                                        for i in range(0, features.shape[0], 2)])
    with tempfile.TemporaryDirectory(prefix="lite-whisper-smooth-") as scratch:
        if smoothing is not None and spend_model:
            encoder = smoothed(encoder, torch.from_numpy(features), smoothing, in_place=True)

        def quantised():  # the PyTorch encoder that source was exported from
            return encoder if smoothing is None or spend_model else smoothed(encoder, torch.from_numpy(features), smoothing)

        if smoothing is not None:
            log(f"smoothing the activations for int8 (alpha {smoothing:g}, {features.shape[0]} clips) ...")
            # a smoothed copy is dropped once exported (large-v3: 2.5 GB while the quantiser needs ~7 GB);
            # the guided search, if it runs, makes it again
            source = _to_onnx(spend_model)(quantised(), Path(scratch) / "smoothed.onnx", external_data_bytes)
            return_freed_memory()
        log("quantising the encoder's weights to int8 ...")
        if max_error is None:
            return quantize_encoder(source, target, min_inner), report
        excluded, error = quantize_within(
            source, target, features, reference, max_error, min_inner, log=log,
            sensitivity=lambda: output_sensitivity(quantised(), torch.from_numpy(features[:1]), source))
    report["int8_calibration_error"] = error
    return excluded, report


def _to_onnx(spend_model: bool):
    """How the encoder goes to ONNX: in a child process when the model is the export's to spend (torch's exporter
    keeps alive what it exported, so only a process of its own gives it back), else here."""
    return export_encoder_apart if spend_model else export_encoder


def _write_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")


def parity_features(processor, audio, limit: int) -> np.ndarray:
    """Log-mel features of the first `limit` clips, or of random audio when none are given."""
    clips = [samples for _, samples in list(audio)[:limit]]
    if not clips:
        rng = np.random.default_rng(0)
        clips = [0.1 * rng.standard_normal(SAMPLE_RATE * seconds).astype(np.float32) for seconds in (3, 11)]
    return processor.feature_extractor(clips, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features


def _transcript_parity(folder: Path, clips, reference: list[str], float32_decoder: Path, threads,
                       options: DecodingOptions) -> dict:
    """Greedy transcripts of the parity clips through the export, against PyTorch's (`reference`).

    "float32": the float32 ONNX encoder with a float32 CTranslate2 decoder (`float32_decoder`, written for
    this check) must reproduce PyTorch; "shipped": the folder as it runs by default (int8 decoder, and the
    int8 encoder when there is one) is reported. One engine at a time.
    """
    result = {"transcripts_pytorch": reference}
    for kind in ("float32", "shipped"):
        exported = ExportedWhisper(folder, encoder="float32", threads=threads, decoder=float32_decoder) \
            if kind == "float32" else ExportedWhisper(folder, threads=threads)
        if kind == "shipped":
            result["transcripts_shipped_encoder"] = exported.encoder_kind
        texts = [t.text for t in transcribe_clips(exported, clips, options=options)]
        del exported
        return_freed_memory()
        result[f"transcripts_identical_{kind}"] = sum(a == b for a, b in zip(texts, reference))
        result[f"transcripts_{kind}"] = texts
    return result


def _placeholder_params(config, ffn: int) -> int:
    """Parameters of the decoder folder's placeholder encoder: stem, positions, final norm, one stub layer."""
    d, mels = config.d_model, config.num_mel_bins
    stem = mels * d * 3 + d + d * d * 3 + d + config.max_source_positions * d + 2 * d
    layer = 4 * d * d + 3 * d + 2 * d * ffn + ffn + d + 4 * d
    return stem + layer


def package_versions() -> dict:
    versions = {"lite_whisper": __version__}
    for package in ("torch", "transformers", "onnx", "onnxruntime", "openvino", "ctranslate2", "faster-whisper"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions
