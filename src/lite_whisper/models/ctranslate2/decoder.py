"""The decoder for CTranslate2, without a second copy of the encoder.

CTranslate2's Whisper model always holds an encoder, and its loader needs at least one encoder
layer; `generate()` skips the encoder when handed already-encoded features (rank 3, last
dimension d_model). So the decoder folder is a CTranslate2 Whisper model whose encoder is a
placeholder: the stem (convolutions, positions, final norm) and one layer with zero weights and
a 16-wide feed-forward, never run. It costs d_model^2 x 7 + stem weights (large-v3: ~14M
parameters) instead of the whole encoder (635M).
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import torch
from ctranslate2.converters import TransformersConverter
from transformers import WhisperForConditionalGeneration

from lite_whisper.lowrank.convert import dense_config

PLACEHOLDER_FFN = 16


def decoder_stub(model) -> WhisperForConditionalGeneration:
    """A dense Whisper model sharing `model`'s decoder and encoder stem, with one zero placeholder encoder layer."""
    config = dense_config(model.config)
    config.encoder_layers = 1
    config.encoder_ffn_dim = PLACEHOLDER_FFN
    stub = WhisperForConditionalGeneration(config).eval()
    state = {key: value for key, value in model.state_dict().items() if not key.startswith("model.encoder.layers.")}
    result = stub.load_state_dict(state, strict=False)
    unexpected = list(result.unexpected_keys)
    missing = [key for key in result.missing_keys if not key.startswith("model.encoder.layers.0.")
               and key != "proj_out.weight"]
    if unexpected or missing:
        raise ValueError(f"decoder weights do not fit a dense Whisper decoder (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    with torch.no_grad():
        for parameter in stub.model.encoder.layers.parameters():
            parameter.zero_()
    stub.tie_weights()
    stub.generation_config = copy.deepcopy(model.generation_config)
    return stub


def convert_to_ctranslate2(model: WhisperForConditionalGeneration, processor, folder: str | Path,
                           quantization: str = "int8") -> Path:
    """A dense Whisper model as a CTranslate2 / faster-whisper folder, by CTranslate2's own converter.

    The folder holds model.bin, config.json, the vocabulary, tokenizer.json and
    preprocessor_config.json (which faster-whisper reads).
    """

    folder = Path(folder)
    with tempfile.TemporaryDirectory(prefix="lite-whisper-ct2-") as scratch:
        source = Path(scratch) / "hf"
        model.save_pretrained(source)
        processor.save_pretrained(source)
        processor.feature_extractor.save_pretrained(source)  # preprocessor_config.json
        TransformersConverter(str(source), copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(
            str(folder), quantization=quantization, force=True)
    return folder


def write_decoder(model, processor, folder: str | Path, quantization: str = "int8") -> Path:
    """Convert `model`'s decoder (and a placeholder encoder) to a CTranslate2 folder with the tokenizer files.

    The folder also loads as a faster-whisper model; its encoder must then be replaced
    (`deploy.faster_whisper`).
    """
    folder = convert_to_ctranslate2(decoder_stub(model), processor, folder, quantization)
    config = json.loads((folder / "config.json").read_text())
    config["lite_whisper_placeholder_encoder"] = True  # says why the encoder here must not be run
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder
