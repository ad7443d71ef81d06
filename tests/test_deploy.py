"""Export to ONNX Runtime + CTranslate2: parity with PyTorch on tiny random models, refusals, the runtime."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import clips, lite_english_model, tiny_english_model, tiny_processor

from lite_whisper.api import load_model
from lite_whisper.cli import main
from lite_whisper.deploy.export import export, relative_error
from lite_whisper.export_manifest import MANIFEST_FILE, ExportedFolderError, read_manifest
from lite_whisper.models.loading import save_model
from lite_whisper.runtime.exported import pipeline_limits
from lite_whisper.runtime.onnx_encoder import OnnxEncoder
from lite_whisper.runtime.pytorch import PyTorchEngine
from lite_whisper.transcription.engine import transcribe_clips
from lite_whisper.transcription.types import DecodingOptions


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The low-rank tiny model exported with an int8 encoder and a float32 decoder."""
    folder = tmp_path_factory.mktemp("export") / "lite-export"
    model = lite_english_model()
    manifest = export(model, tiny_processor(), folder, int8=True, decoder_quantization="float32",
                      parity_audio=clips(2), parity_max_new_tokens=12)
    return model, folder, manifest


@pytest.mark.parametrize("low_rank", [False, True])
def test_onnx_encoder_matches_pytorch_at_batch_1_and_3(tmp_path, low_rank):
    from lite_whisper.deploy.onnx_graph import export_encoder

    model = lite_english_model() if low_rank else tiny_english_model()
    for layer in model.model.encoder.layers:
        layer.self_attn.path = "ordinary"  # full-width heads: the fused attention (see the reduced-path test)
    path = export_encoder(model, tmp_path / "encoder.onnx")
    import onnx

    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    # six linears in each of 2 layers (two MatMuls each when low-rank) and the two convolutions of the stem
    assert ops.count("MatMul") == (24 if low_rank else 12) + 2 and "Conv" not in ops
    assert ops.count("MultiHeadAttention") == 2  # one fused attention per layer
    session = OnnxEncoder(path, threads=1)
    for batch in (1, 3):
        features = torch.randn(batch, 80, 3000, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            reference = model.model.encoder(features).last_hidden_state.numpy()
        assert relative_error(session(features.numpy()), reference) < 1e-5


def test_the_encoder_export_says_nothing_of_torchvision(tmp_path, capfd, caplog):
    from lite_whisper.deploy.onnx_graph import export_encoder

    export_encoder(tiny_english_model(), tmp_path / "encoder.onnx")
    assert "torchvision" not in capfd.readouterr().err + caplog.text  # the exporter's registry, not the user's


@pytest.mark.parametrize("stride", [1, 2])
def test_a_convolution_as_a_matmul_over_strided_slices_is_the_convolution(stride):
    from lite_whisper.deploy.onnx_graph import _ConvAsMatMul

    torch.manual_seed(stride)
    conv = torch.nn.Conv1d(5, 7, kernel_size=3, stride=stride, padding=1)
    x = torch.randn(2, 5, 30)
    with torch.no_grad():
        assert torch.allclose(_ConvAsMatMul(conv)(x.transpose(1, 2)), conv(x).transpose(1, 2), atol=1e-6)


def test_reduced_dimension_attention_keeps_its_own_graph(tmp_path):
    """Layers on LiteASR's reduced-dimension attention path are not fused, and still match PyTorch."""
    from lite_whisper.deploy.onnx_graph import export_encoder

    model = lite_english_model()
    layers = model.model.encoder.layers
    layers[0].self_attn.path = "reduced"
    layers[1].self_attn.path = "ordinary"
    path = export_encoder(model, tmp_path / "encoder.onnx")
    import onnx

    assert [node.op_type for node in onnx.load(str(path)).graph.node].count("MultiHeadAttention") == 1
    features = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = model.model.encoder(features).last_hidden_state.numpy()
    assert relative_error(OnnxEncoder(path, threads=1)(features.numpy()), reference) < 1e-5
    assert layers[0].self_attn.path == "reduced" and type(layers[1].self_attn).__name__ == "LiteWhisperAttention"


def test_export_writes_a_complete_parity_checked_folder(exported):
    model, folder, manifest = exported
    assert read_manifest(folder) == manifest
    assert manifest["encoder"]["default"] == "int8" and manifest["encoder"]["low_rank"]
    assert manifest["encoder"]["int8_rotated_middles"]  # its int8 copy was quantised from turned middles
    parity = manifest["parity"]
    assert parity["encoder_relative_error_float32"] < 1e-4
    assert 0 < parity["encoder_relative_error_int8"] < 0.2  # int8 really quantised, within a stated bound
    from lite_whisper.runtime.openvino_encoder import bfloat16_supported

    if bfloat16_supported():  # measured wherever the export machine can run it
        assert 0 < parity["encoder_relative_error_bfloat16"] < 3e-2
    assert parity["transcripts_shipped_encoder"] == ("bfloat16" if bfloat16_supported() else "int8")
    assert parity["transcripts_identical_float32"] == 2  # float32 encoder + float32 decoder = PyTorch
    for name in ("encoder.onnx", "encoder.int8.onnx", "decoder/model.bin", "tokenizer.json",
                 "preprocessor_config.json", "generation_config.json"):
        assert (folder / name).is_file(), name


def test_an_export_that_spends_its_model_writes_the_same_folder_and_frees_the_weights(exported, tmp_path):
    """`release_model` (the command line's): the encoder smoothed in place, every weight freed before the parity
    checks; the files and every parity figure are those of the export that copies."""
    model, folder, manifest = exported
    spent = lite_english_model()  # the same seed: the same weights as the fixture's model
    theirs = export(spent, tiny_processor(), tmp_path / "spent", int8=True, decoder_quantization="float32",
                    parity_audio=clips(2), parity_max_new_tokens=12, release_model=True)
    assert all(p.is_meta for p in spent.parameters())
    assert all(not p.is_meta for p in model.parameters())  # the fixture's export left its model whole
    assert theirs["parity"] == manifest["parity"] and theirs["encoder"] == manifest["encoder"]
    for name in ("encoder.onnx", "encoder.onnx.data", "encoder.int8.onnx", "encoder.int8.onnx.data", "decoder/model.bin"):
        if (folder / name).exists() or (tmp_path / "spent" / name).exists():
            assert (folder / name).read_bytes() == (tmp_path / "spent" / name).read_bytes(), name

def test_an_int8_clip_is_encoded_the_same_whatever_its_batch(exported):
    """Dynamic int8 takes one activation scale per call: the int8 encoder runs clip by clip."""
    _, folder, _ = exported
    int8, float32 = OnnxEncoder(folder / "encoder.int8.onnx", threads=1), OnnxEncoder(folder / "encoder.onnx", threads=1)
    assert int8.one_clip_at_a_time and not float32.one_clip_at_a_time
    features = torch.randn(3, 80, 3000, generator=torch.Generator().manual_seed(5)).numpy()
    features[0] *= 40  # a loud batch-mate
    batched = int8(features)
    assert np.array_equal(batched[1:2], int8(features[1:2]))


def test_openvino_runs_the_exported_encoder_like_onnx_runtime(exported):
    """OpenVINO reads encoder.onnx (fused attention included): float32 = ONNX Runtime; bfloat16 within 3%."""
    from lite_whisper.runtime.openvino_encoder import OpenVinoEncoder, bfloat16_supported

    _, folder, _ = exported
    features = torch.randn(3, 80, 3000, generator=torch.Generator().manual_seed(7)).numpy()
    reference = OnnxEncoder(folder / "encoder.onnx", threads=1)(features)
    assert relative_error(OpenVinoEncoder(folder / "encoder.onnx", threads=1, precision="f32")(features),
                          reference) < 1e-4
    if not bfloat16_supported():
        pytest.skip("this CPU has no native bfloat16: OpenVINO's bfloat16 path cannot be checked here")
    bf16 = OpenVinoEncoder(folder / "encoder.onnx", threads=1)
    batched = bf16(features)
    assert 1e-4 < relative_error(batched, reference) < 3e-2  # really bfloat16, and close
    one_clip = bf16(features[1:2])
    assert one_clip.flags["C_CONTIGUOUS"] and relative_error(one_clip, batched[1:2]) < 1e-2
    assert np.array_equal(bf16(features[1:2]), one_clip)  # outputs are copies, not the reused request buffer


def test_the_encoder_is_chosen_by_what_this_machine_runs(exported, monkeypatch):
    from lite_whisper.runtime import openvino_encoder
    from lite_whisper.runtime.encoders import EncoderUnavailableError, choose_encoder, runnable_encoders

    _, _, manifest = exported
    without_int8 = {"encoder": {**manifest["encoder"], "int8": None, "default": "float32"}}
    monkeypatch.setattr(openvino_encoder, "bfloat16_supported", lambda: True)
    assert choose_encoder(manifest) == "bfloat16" and choose_encoder(manifest, "int8") == "int8"
    assert runnable_encoders(manifest) == {"float32": "onnxruntime", "int8": "onnxruntime", "bfloat16": "openvino"}
    monkeypatch.setattr(openvino_encoder, "bfloat16_supported", lambda: False)
    assert choose_encoder(manifest, "auto") == "int8" and choose_encoder(without_int8, None) == "float32"
    assert "bfloat16" not in runnable_encoders(manifest) and "int8" not in runnable_encoders(without_int8)
    with pytest.raises(EncoderUnavailableError, match="native bfloat16"):
        choose_encoder(manifest, "bfloat16")
    with pytest.raises(EncoderUnavailableError, match="without an int8 encoder"):
        choose_encoder(without_int8, "int8")
    with pytest.raises(EncoderUnavailableError, match="unknown encoder"):
        choose_encoder(manifest, "fp16")


def test_ct2_decoder_decodes_the_greedy_tokens_of_transformers(exported):
    """Given the same encoder output, CTranslate2 (float32) and transformers pick the same tokens."""
    from transformers.modeling_outputs import BaseModelOutput

    from lite_whisper.runtime.exported import ExportedWhisper
    from lite_whisper.transcription.policy import decoder_prompt

    model, folder, _ = exported
    runtime = ExportedWhisper(folder, encoder="float32", threads=1)
    processor = tiny_processor()
    features = processor.feature_extractor([audio for _, audio in clips(3)], sampling_rate=16000,
                                           return_tensors="np").input_features
    with torch.inference_mode():
        encoded = model.model.encoder(torch.from_numpy(features)).last_hidden_state
        expected = model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=encoded), max_new_tokens=12,
                                  num_beams=1)
    options = DecodingOptions(language="en", max_new_tokens=12)
    results = runtime.generate(encoded.numpy(), decoder_prompt(model.generation_config, options), options)
    eos = model.generation_config.eos_token_id
    for row, result in zip(expected.tolist(), results):
        row = [token for token in row if token != eos][: len(result.sequences_ids[0])]
        assert result.sequences_ids[0][: len(row)] == row


def test_runtime_transcribes_like_the_model_it_came_from(exported):
    model, folder, _ = exported
    from lite_whisper.runtime.exported import ExportedWhisper

    runtime, processor = load_model(folder, encoder="int8")
    assert isinstance(runtime, ExportedWhisper) and runtime.encoder_kind == "int8"

    options = DecodingOptions(language="en", max_new_tokens=12, no_speech_threshold=None)
    with_float32 = ExportedWhisper(folder, encoder="float32", threads=1)
    # the folder's own decoder here is float32, so the float32 route equals PyTorch exactly
    ours = [t.text for t in transcribe_clips(with_float32, clips(3), batch_size=2, options=options)]
    theirs = [t.text for t in transcribe_clips(PyTorchEngine(model, processor), clips(3), batch_size=2,
                                               options=options)]
    assert ours == theirs
    assert len(list(transcribe_clips(runtime, clips(2), options=options))) == 2


def test_a_prompt_decodes_alike_in_ctranslate2_and_transformers(exported):
    """Previous text (<|startofprev|> ...) before the prompt: the same tokens and silence scores from both engines
    (without timestamps: the exported engine leaves those to faster-whisper's pipeline, `initial_prompt`)."""
    from lite_whisper.runtime.exported import ExportedWhisper

    model, folder, _ = exported
    runtime = ExportedWhisper(folder, encoder="float32", threads=1)
    pytorch = PyTorchEngine(model, tiny_processor())
    options = DecodingOptions(language="en", max_new_tokens=12, prompt="Kubernetes and PostgreSQL, said Ada.")
    audio = [samples for _, samples in clips(2)]
    ours = runtime.decode(runtime.encode(runtime.features(audio)), options)
    theirs = pytorch.decode(pytorch.encode(pytorch.features(audio)), options)
    unprompted = pytorch.decode(pytorch.encode(pytorch.features(audio)), DecodingOptions(language="en",
                                                                                          max_new_tokens=12))
    assert [window.tokens for window in ours] == [window.tokens for window in theirs]
    assert [window.tokens for window in theirs] != [window.tokens for window in unprompted]
    for mine, yours in zip(ours, theirs):
        assert mine.no_speech_prob == pytest.approx(yours.no_speech_prob, abs=1e-4)


def test_forced_tokens_decode_the_same_tokens_in_ctranslate2_transformers_and_faster_whisper(exported, tmp_path):
    """Forced decoding (end of text suppressed, exactly N tokens a window): the speed benchmarks' decode. On a model
    that would end every window at once, CTranslate2 and transformers pick the same N tokens, and faster-whisper's
    pipeline makes N too (its max_new_tokens rule)."""
    import copy

    from lite_whisper.models.ctranslate2.decoder import write_decoder
    from lite_whisper.runtime.exported import ExportedWhisper

    model, folder, _ = exported
    eos = model.generation_config.eos_token_id
    ending = copy.deepcopy(model)
    with torch.no_grad():  # the final norm's bias points at <|endoftext|>'s output row: greedy decoding ends at once
        decoder = ending.model.decoder
        direction = torch.nn.functional.normalize(torch.randn(decoder.layer_norm.bias.shape[0]), dim=0)
        decoder.embed_tokens.weight[eos] = direction  # tied: <|endoftext|>'s row of the output projection
        decoder.layer_norm.bias.copy_(8 * direction)  # + 8 on its logit
    processor = tiny_processor()
    runtime = ExportedWhisper(folder, encoder="float32", threads=1,
                              decoder=write_decoder(ending, processor, tmp_path / "decoder", quantization="float32"))
    pytorch = PyTorchEngine(ending, processor)
    options = DecodingOptions(language="en", forced_tokens=40, no_speech_threshold=None)
    audio = [samples for _, samples in clips(2)]
    free = pytorch.decode(pytorch.encode(pytorch.features(audio)),
                          DecodingOptions(language="en", max_new_tokens=40, no_speech_threshold=None))
    assert all(len(window.tokens) <= 2 for window in free)  # one token (<|endoftext|> cannot begin), then the end
    ours = runtime.decode(runtime.encode(runtime.features(audio)), options)
    theirs = pytorch.decode(pytorch.encode(pytorch.features(audio)), options)
    assert [len(window.tokens) for window in ours] == [40, 40]
    assert [window.tokens for window in ours] == [window.tokens for window in theirs]
    assert all(eos not in window.tokens for window in ours)
    segments, _ = runtime.pipeline.transcribe(audio[0], beam_size=1, temperature=[0.0], without_timestamps=True,
                                              condition_on_previous_text=False,
                                              **pipeline_limits(model.generation_config, options))
    assert [len(segment.tokens) for segment in segments] == [40]
    with pytest.raises(ValueError, match="forced tokens"):
        DecodingOptions(forced_tokens=40)  # the silence rule is on by default: refused, not silently ignored


def test_load_engine_builds_every_backend_from_one_spec(exported, tmp_path):
    from lite_whisper.api import BACKENDS, load_engine
    from lite_whisper.models.loading import ModelLoadError
    from lite_whisper.runtime.exported import ExportedWhisper
    from lite_whisper.runtime.faster_whisper_engine import FasterWhisperEngine
    from lite_whisper.runtime.hybrid import HybridEngine

    _, folder, _ = exported
    dense = tmp_path / "dense"
    tiny_english_model().save_pretrained(dense)
    tiny_processor().save_pretrained(dense)
    kinds = {backend: type(load_engine(dense, backend, threads=1)) for backend in ("auto", "pytorch", "hybrid",
                                                                                   "faster-whisper")}
    assert kinds == {"auto": PyTorchEngine, "pytorch": PyTorchEngine, "hybrid": HybridEngine,
                     "faster-whisper": FasterWhisperEngine}
    assert type(load_engine(folder, "exported", threads=1)) is ExportedWhisper is type(load_engine(folder, threads=1))
    options = DecodingOptions(max_new_tokens=6, timestamps=True)
    texts = {backend: next(transcribe_clips(load_engine(dense, backend, threads=1), clips(1), options=options)).text
             for backend in ("pytorch", "hybrid", "faster-whisper")}
    assert texts["pytorch"] == texts["hybrid"]  # the same greedy tokens from transformers and CTranslate2 (float32)
    assert set(BACKENDS) == {"auto", "pytorch", "hybrid", "exported", "faster-whisper"}
    with pytest.raises(ModelLoadError, match="not a folder written by lite-whisper export"):
        load_engine(dense, "exported")
    with pytest.raises(ModelLoadError, match="runs on its own engine"):
        load_engine(folder, "hybrid")
    with pytest.raises(ValueError, match="unknown backend 'onnx'"):
        load_engine(dense, "onnx")
    lite = tmp_path / "lite"
    save_model(lite_english_model(), tiny_processor(), lite)
    with pytest.raises(ModelLoadError, match="faster-whisper runs dense models"):
        load_engine(lite, "faster-whisper")


def test_runtime_features_are_the_transformers_processors():
    """The runtime makes features with the transformers processor; faster-whisper's own extractor is close."""
    from faster_whisper.feature_extractor import FeatureExtractor

    processor = tiny_processor()
    audio = clips(1)[0][1]
    ours = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="np").input_features[0]
    theirs = FeatureExtractor(feature_size=80)(np.pad(audio, (0, 16000 * 30 - len(audio))))[:, :3000]
    assert ours.shape == theirs.shape == (80, 3000)
    assert np.abs(ours - theirs).max() < 1e-3  # same log-mel up to float error


def test_export_refuses_to_overwrite_and_incomplete_folders_are_refused(exported, tmp_path, capsys, calibration_folder):
    model, folder, _ = exported
    dense = save_model(tiny_english_model(), tiny_processor(), tmp_path / "dense")
    assert main(["export", str(dense), "-o", str(folder)]) == 2
    assert "already exists" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "encoder.int8.onnx").unlink()
    with pytest.raises(ExportedFolderError, match="missing encoder.int8.onnx"):
        load_model(broken)
    (broken / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ExportedFolderError, match="unreadable"):
        load_model(broken)
    assert main(["eval", str(broken), "--data", str(calibration_folder)]) == 2
    assert "unreadable" in capsys.readouterr().err


def test_cli_export_and_transcribe(tmp_path, capsys, calibration_folder):
    dense = save_model(tiny_english_model(), tiny_processor(), tmp_path / "dense")
    out = tmp_path / "dense-export"
    assert main(["export", str(dense), "-o", str(out), "--data", str(calibration_folder), "--parity-clips", "2",
                 "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "encoder relative error vs PyTorch" in printed and "greedy transcripts identical" in printed
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["encoder"]["int8"] is None and manifest["threads"] == 1
    assert not manifest["encoder"]["low_rank"]
    assert main(["transcribe", str(out), str(calibration_folder / "clip0.wav")]) == 0
    capsys.readouterr()
    assert main(["transcribe", str(out), str(calibration_folder / "clip0.wav"), "--encoder", "int8"]) == 2
    assert "without an int8 encoder" in capsys.readouterr().err
    assert main(["transcribe", str(dense), str(calibration_folder / "clip0.wav"), "--encoder", "float32"]) == 2
    assert "applies to exported folders" in capsys.readouterr().err
    for bad, message in (("1.5", "within 0..1"), ("much", "takes a number")):
        assert main(["export", str(dense), "-o", str(tmp_path / "never"), "--int8", "--int8-smoothing", bad]) == 2
        assert message in capsys.readouterr().err and not (tmp_path / "never").exists()


def test_bench_against_faster_whisper_runs_every_contender(tmp_path, capsys, calibration_folder):
    """bench --against faster-whisper on a tiny random model: every engine transcribes and is timed."""
    lines = ["file\ttranscript"] + [f"clip{index}.wav\tsome words {index}" for index in range(6)]
    (calibration_folder / "transcripts.tsv").write_text("\n".join(lines) + "\n")
    dense = save_model(tiny_english_model(), tiny_processor(), tmp_path / "dense")
    out = tmp_path / "export"
    assert main(["export", str(dense), "-o", str(out), "--int8", "--data", str(calibration_folder),
                 "--calibration", str(calibration_folder), "--parity-clips", "1"]) == 0
    assert not json.loads((out / MANIFEST_FILE).read_text())["encoder"]["int8_rotated_middles"]  # dense: no middles
    result_file = tmp_path / "deploy.json"
    assert main(["bench", str(out), "--against", "faster-whisper", "--data", str(calibration_folder), "--limit", "3",
                 "--threads", "1", "--repeats", "2", "--decode-batch-size", "2", "--output", str(result_file)]) == 0
    result = json.loads(result_file.read_text())
    names = [c["name"] for c in result["contenders"]]
    assert names == ["faster-whisper int8", "faster-whisper batched b2", "lite-whisper export b2",
                     "lite-whisper export b1"]
    assert all(c["rtfx"] > 0 and c["words"] == 9 for c in result["contenders"])
    from lite_whisper.runtime.openvino_encoder import bfloat16_supported

    bfloat16 = bfloat16_supported()
    assert set(result["encoder_ms"]) == {"ctranslate2 int8 (dense)", "onnxruntime float32 (export)",
                                         "onnxruntime int8 (export)"} | ({"openvino bfloat16 (export)"} if bfloat16 else set())
    assert result["encoder"] == ("bfloat16" if bfloat16 else "int8")
    capsys.readouterr()
    assert main(["bench", str(out), "--encoder", "int8"]) == 2  # --encoder without --against
    assert "only applies with --against" in capsys.readouterr().err
    assert main(["bench", str(dense), "--against", "faster-whisper"]) == 2  # not an exported folder
    assert "not an exported folder" in capsys.readouterr().err


def run_script(name: str, args: list[str], monkeypatch) -> int:
    """scripts/`name` run as `python scripts/name ARGS` would run it, in this process; its exit code."""
    import runpy
    import sys

    script = Path(__file__).parent.parent / "scripts" / name
    monkeypatch.setattr(sys, "argv", [name, *args])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(script), run_name="__main__")
    return done.value.code


def test_the_export_encoder_timing_script_times_every_folder_in_turns(exported, tmp_path, monkeypatch, capsys):
    _, folder, _ = exported
    output = tmp_path / "timing.json"
    assert run_script("export_encoder_timing.py", [str(folder), str(folder), "--threads", "1", "--repeats", "2",
                                                   "--warmup", "1", "--json", str(output)], monkeypatch) == 0
    rows = json.loads(output.read_text())["rows"]
    assert [row["folder"] for row in rows] == [str(folder)] * 2 and rows[0]["gain"] == 1.0
    assert all(row["median_ms"] > 0 for row in rows)
    float32_only = tmp_path / "float32-only"
    shutil.copytree(folder, float32_only)
    manifest = json.loads((float32_only / MANIFEST_FILE).read_text())
    manifest["encoder"]["int8"] = None
    (float32_only / MANIFEST_FILE).write_text(json.dumps(manifest))
    assert run_script("export_encoder_timing.py", [str(float32_only)], monkeypatch) == 2
    assert "has no int8 encoder" in capsys.readouterr().err


def test_the_thin_matmul_script_times_int8_low_rank_pairs_against_dense(tmp_path, monkeypatch, capsys):
    """scripts/thin_matmul_benchmark.py on a small shape: a row per rank with its dense time and FLOP prediction;
    malformed shapes and ranks are refused with exit code 2."""
    output = tmp_path / "thin.json"
    assert run_script("thin_matmul_benchmark.py", ["--shape", "64x128", "--ranks", "16-32/16", "--threads", "1",
                                                   "--repeats", "2", "--warmup", "1", "--json", str(output)],
                      monkeypatch) == 0
    rows = json.loads(output.read_text())["rows"]
    assert [(row["shape"], row["rank"]) for row in rows] == [("64x128", 16), ("64x128", 32)]
    assert rows[0]["predicted"] == round(64 * 128 / (16 * 192), 3) and all(row["ms"] > 0 for row in rows)
    for bad in (["--shape", "64by128"], ["--ranks", "0,16"]):
        assert run_script("thin_matmul_benchmark.py", bad, monkeypatch) == 2
        assert "error:" in capsys.readouterr().err
