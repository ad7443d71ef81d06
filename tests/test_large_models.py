"""Large models on the CPU, in miniature: external ONNX weights, the int8 search at scale, random-weight exports,
the forced-token benchmark and the authors' checkpoint layout."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import tiny_processor

from lite_whisper.api import load_model
from lite_whisper.cli import main
from lite_whisper.deploy.export import export
from lite_whisper.transcription.engine import transcribe_clips
from lite_whisper.transcription.types import DecodingOptions

# large-v3-turbo's layout (128 mels, 51,866 tokens, 20-wide heads... here 4 of 64) at d 256, 4 + 2 layers
MINIATURE = dict(d_model=256, encoder_layers=4, decoder_layers=2, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=1024, decoder_ffn_dim=1024)
FORCED = DecodingOptions(language="en", forced_tokens=12, no_speech_threshold=None)


def audio(seconds: float = 4.0, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))).astype(np.float32)


@pytest.fixture(scope="module")
def miniature_export(tmp_path_factory):
    """The miniature large layout at 0.5 x break-even rank, exported with every weight file external."""
    from lite_whisper.models.random import random_whisper

    model, processor = random_whisper("large-v3-turbo", 0.5, **MINIATURE)
    folder = tmp_path_factory.mktemp("large") / "export"
    manifest = export(model, processor, folder, int8=True, parity_audio=[("a", audio())],
                      calibration_audio=[("b", audio(seed=1))], external_data_bytes=1, parity_max_new_tokens=8)
    return model, processor, folder, manifest


def test_a_large_layout_exports_with_external_weights_and_runs(miniature_export):
    model, processor, folder, manifest = miniature_export
    assert (folder / "encoder.onnx.data").stat().st_size > 0 and (folder / "encoder.int8.onnx.data").stat().st_size > 0
    assert (folder / "encoder.onnx").stat().st_size < (folder / "encoder.onnx.data").stat().st_size
    assert manifest["parity"]["encoder_relative_error_float32"] < 1e-4
    assert manifest["export_peak_rss_mb"] > 0 and manifest["export_seconds"] > 0
    assert len(processor.tokenizer) == 51866 and model.config.num_mel_bins == 128
    moved = folder.parent / "moved"  # the data files are found beside the graph wherever the folder goes
    shutil.copytree(folder, moved)
    engine, _ = load_model(moved, encoder="int8")
    transcripts = list(transcribe_clips(engine, [("x", audio(25.0, seed=2)), ("y", audio(3.0, seed=3))], options=FORCED))
    assert len(transcripts) == 2
    windows = engine.decode(engine.encode(engine.features([audio(5.0)])), FORCED)
    assert [len(window.tokens) for window in windows] == [12]
    from lite_whisper.deploy.export import relative_error
    from lite_whisper.runtime.onnx_encoder import OnnxEncoder
    from lite_whisper.runtime.openvino_encoder import OpenVinoEncoder

    features = engine.features([audio(5.0)])  # OpenVINO reads the external weights too (bfloat16 where the CPU has it)
    assert relative_error(OpenVinoEncoder(moved / "encoder.onnx", threads=1, precision="f32")(features),
                          OnnxEncoder(moved / "encoder.onnx", threads=1)(features)) < 1e-4


def test_large_v3_vocabulary_has_its_extra_language_and_renamed_no_speech_token():
    from transformers import WhisperConfig

    from lite_whisper.models.random import random_processor

    tokenizer = random_processor(WhisperConfig(vocab_size=51866, num_mel_bins=128)).tokenizer
    ids = tokenizer.convert_tokens_to_ids(["<|su|>", "<|yue|>", "<|translate|>", "<|nospeech|>", "<|notimestamps|>",
                                           "<|0.00|>"])
    assert ids == [50357, 50358, 50359, 50363, 50364, 50365]  # openai/whisper-large-v3's ids
    assert len(random_processor(WhisperConfig(vocab_size=51865)).tokenizer) == 51865


def test_the_guided_int8_search_meets_the_bound_in_a_few_trials(tmp_path, monkeypatch):
    """Past the exhaustive limit: one sensitivity pass, then a few trials; the bound holds, far fewer trials than
    MatMuls, and the MatMuls int8 hurts most (the stem's, on this model) are the first left float32."""
    from lite_whisper.deploy import int8
    from lite_whisper.deploy.int8_sensitivity import onnx_matmul_modules, output_sensitivity
    from lite_whisper.deploy.onnx_graph import export_encoder
    from lite_whisper.models.random import random_whisper

    model, processor = random_whisper("tiny", 0.5)
    source = export_encoder(model, tmp_path / "encoder.onnx")
    features = processor.feature_extractor([audio(5.0, seed=s) for s in range(2)], sampling_rate=16000,
                                           return_tensors="np").input_features
    with torch.inference_mode():
        reference = model.model.encoder(torch.from_numpy(features)).last_hidden_state.numpy()
    candidates = int8.int8_candidates(source)
    harm = output_sensitivity(model.model.encoder, torch.from_numpy(features[:1]), source)
    assert set(harm) == set(candidates)  # every MatMul maps to its module
    assert onnx_matmul_modules(source, {"conv1", "conv2"}) and max(harm, key=harm.get) in onnx_matmul_modules(
        source, {"conv1", "conv2"})
    trials = []
    original = int8.quantize_encoder

    def counted(*args, **kwargs):
        trials.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(int8, "quantize_encoder", counted)
    kept, error = int8.quantize_within(source, tmp_path / "int8.onnx", features, reference, max_error=0.001,
                                       exhaustive_limit=0, sensitivity=lambda: harm)
    assert error <= 0.001
    assert 0 < len(kept) < len(candidates)
    assert len(trials) <= 1 + int8.GUIDED_TRIALS + 1  # int8 everywhere, the guided trials, the final write
    assert len(trials) < len(candidates) / 4


def test_guided_exclusion_gives_up_to_all_float32_when_the_bound_is_never_met():
    from lite_whisper.deploy.int8 import guided_exclusion

    candidates = {"a": 10, "b": 10, "c": 10}
    excluded = guided_exclusion(candidates, {"a": 1.0, "b": 0.5, "c": 0.1}, everything=1.0, max_error=0.01,
                                trial=lambda names: 0.5, trials=2)
    assert sorted(excluded) == ["a", "b", "c"]


def test_cli_exports_random_weights_and_refuses_bad_combinations(tmp_path, capsys):
    assert main(["export", "tiny.en", "--random-weights", "tiny", "-o", str(tmp_path / "x")]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["export", "tiny.en", "--rank-fraction", "0.5", "-o", str(tmp_path / "x")]) == 2
    assert "--rank-fraction" in capsys.readouterr().err
    assert main(["export", "--random-weights", "tiny", "--rank-fraction", "1.5", "-o", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
    assert main(["export", "--random-weights", "tiny", "--rank-fraction", "0.5", "-o", str(tmp_path / "r"),
                 "--int8-max-error", "none"]) == 0
    manifest = json.loads((tmp_path / "r" / "lite_whisper_export.json").read_text())
    assert manifest["source_model"] == "random:tiny@0.5" and manifest["encoder"]["low_rank"]
    assert "transcripts_pytorch" not in manifest["parity"]  # random text is not compared
    assert "peak memory" in capsys.readouterr().out


def authors_layout(folder, tmp_path):
    """A tiny lite-whisper folder as the authors publish theirs: no processor files, a minimal generation config,
    auto_map for AutoConfig and AutoModel only."""
    from conftest import lite_english_model

    from lite_whisper.lowrank.checkpoint import PROCESSOR_FILES, save_lite_whisper

    model = lite_english_model()
    save_lite_whisper(model, tiny_processor(), folder)
    for name in (*PROCESSOR_FILES, "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "vocab.json", "merges.txt", "normalizer.json", "added_tokens.json"):
        (folder / name).unlink(missing_ok=True)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {key: config["auto_map"][key] for key in ("AutoConfig", "AutoModel")}
    config.pop("lite_whisper", None)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "generation_config.json").write_text(json.dumps({
        "bos_token_id": 50256, "decoder_start_token_id": 50257, "eos_token_id": 50256, "max_length": 448,
        "pad_token_id": 50256}))
    processor_folder = tmp_path / "processor"
    tiny_processor().save_pretrained(processor_folder)
    return model, processor_folder


def test_a_folder_in_the_authors_layout_exports_and_transcribes(tmp_path, capsys):
    folder = tmp_path / "lite-whisper-tiny"
    model, processor_folder = authors_layout(folder, tmp_path)
    assert not any(folder.glob("*token*"))
    output = tmp_path / "export"
    assert main(["export", str(folder), "--processor", str(processor_folder), "-o", str(output),
                 "--data", str(tmp_path / "clips"), "--parity-clips", "1"]) == 2  # no such clips: refused first
    assert not output.exists()
    clips = tmp_path / "clips"
    clips.mkdir()
    import soundfile as sf

    sf.write(clips / "one.wav", audio(3.0), 16000)
    assert main(["export", str(folder), "--processor", str(processor_folder), "-o", str(output),
                 "--data", str(clips), "--parity-clips", "1"]) == 0
    engine, _ = load_model(output)
    assert engine.generation_config.no_timestamps_token_id == 50362  # completed from the tokenizer, not the stub
    options = DecodingOptions(language="en", max_new_tokens=8, no_speech_threshold=None)
    assert len(list(transcribe_clips(engine, [("one", audio(3.0))], options=options))) == 1
    capsys.readouterr()
    assert main(["transcribe", str(output), str(clips / "one.wav"), "--max-new-tokens", "8"]) == 0


def test_the_forced_decode_benchmark_makes_exactly_n_tokens_a_window_in_every_contender(miniature_export):
    """The benchmark's contenders on the miniature export, taking turns: the export (batched) and faster-whisper's two
    pipelines (on the export's decoder folder, a CTranslate2 model whose placeholder encoder runs: enough to count
    tokens); the export once more in a process of its own, as the script runs every contender."""
    from lite_whisper.benchmark.forced_decode import ForcedContender, run_forced, speech_windows

    _, _, folder, _ = miniature_export
    windows = speech_windows([audio(7.0, seed=s) for s in range(3)], 2)  # 21 s of clips, reused to fill 60 s
    assert [len(w) for w in windows] == [480000, 480000]
    contenders = [ForcedContender("export", "export", str(folder), 2),
                  ForcedContender("fw", "faster-whisper", str(folder / "decoder")),
                  ForcedContender("fw batched", "faster-whisper-batched", str(folder / "decoder"), 2)]
    results = run_forced(contenders, windows, 12, threads=1, own_process=False)
    for result in results:
        assert result.failure == "" and result.token_counts == [12, 12], result.name
        assert result.rtfx > 0 and result.encoder_seconds > 0 and result.weight_mb > 0 and result.peak_rss_mb > 0
    apart, missing = run_forced([contenders[0], ForcedContender("gone", "export", str(folder / "missing"))],
                                windows, 12, threads=1)
    assert apart.failure == "" and apart.token_counts == [12, 12] and apart.peak_rss_mb > 0
    assert missing.failure and missing.rtfx is None  # reported; the other contender finished
