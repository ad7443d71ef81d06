"""`export --format optimum` on tiny random models: optimum's names and axes, the merged decoder against
PyTorch, parity, refusals, model cards. The real consumers run in test_consumers_integration.py."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import clips, lite_english_model, tiny_english_model, tiny_processor

from lite_whisper.api import load_model
from lite_whisper.cli import main
from lite_whisper.models.model_card import licence_of, model_card
from lite_whisper.deploy.onnx_decoder import cache_names, decoder_step
from lite_whisper.deploy.optimum_layout import export_optimum
from lite_whisper.export_manifest import ExportedFolderError
from lite_whisper.models.loading import save_model
from lite_whisper.runtime.optimum_onnx import OptimumOnnxWhisper, onnx_file


@pytest.fixture(scope="module")
def optimum_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("optimum") / "lite-onnx"
    model = lite_english_model()
    manifest = export_optimum(model, tiny_processor(), folder, source="tiny-random", parity_audio=clips(2),
                              parity_max_new_tokens=12)
    return model, folder, manifest


def _shape(value) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_the_folder_has_optimums_files_names_and_axes(optimum_folder):
    model, folder, manifest = optimum_folder
    for name in ("config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json",
                 "tokenizer_config.json", "README.md"):
        assert (folder / name).is_file(), name
    assert manifest["files"] == ["onnx/decoder_model_merged.onnx", "onnx/decoder_model_merged_quantized.onnx",
                                 "onnx/encoder_model.onnx", "onnx/encoder_model_quantized.onnx"]
    assert json.loads((folder / "config.json").read_text())["model_type"] == "whisper"  # no remote code
    # transformers 4 (optimum-onnx's) cannot read transformers 5's list of extra special tokens
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert "extra_special_tokens" not in tokenizer_config and tokenizer_config["additional_special_tokens"]

    encoder = onnx.load(str(onnx_file(folder, "encoder_model")), load_external_data=False).graph
    assert [i.name for i in encoder.input] == ["input_features"] and [o.name for o in encoder.output] == ["last_hidden_state"]
    assert _shape(encoder.input[0])[0] == _shape(encoder.output[0])[0] == "batch_size"  # optimum's axis name
    # optimum's WhisperOnnxConfig with the merged decoder: input_ids, encoder_hidden_states, for each layer
    # past_key_values.{i}.decoder.key/value then .encoder.key/value, use_cache_branch; outputs in the same order
    layers, heads = model.config.decoder_layers, model.config.decoder_attention_heads
    for quantized in (False, True):
        decoder = onnx.load(str(onnx_file(folder, "decoder_model_merged", quantized))).graph
        names = [i.name for i in decoder.input]
        assert names[:2] == ["input_ids", "encoder_hidden_states"] and names[-1] == "use_cache_branch"
        assert names[2:-1] == [f"past_key_values.{i}.{part}.{kind}" for i in range(layers)
                               for part in ("decoder", "encoder") for kind in ("key", "value")]
        assert [o.name for o in decoder.output] == ["logits"] + [n.replace("past_key_values", "present") for n in names[2:-1]]
        cache = {i.name: _shape(i) for i in decoder.input if i.name.startswith("past_key_values.")}
        # heads and head size fixed: transformers.js sizes its empty first-step cache from them
        assert {tuple(s[1::2]) for s in cache.values()} == {(heads, model.config.d_model // heads)}
        assert _shape(decoder.input[0]) == ["batch_size", "decoder_sequence_length"]


def test_the_readme_is_a_model_card_and_lite_whisper_names_the_format(optimum_folder):
    _, folder, manifest = optimum_folder
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlicense: other\nbase_model: tiny-random\n") and "library_name: transformers.js" in card
    assert "ORTModelForSpeechSeq2Seq" in card and "@huggingface/transformers" in card
    assert f"{manifest['parity']['transcripts_identical_float32']}/2 clips" in card
    with pytest.raises(ExportedFolderError, match="optimum / transformers.js folder"):
        load_model(folder)


def test_the_written_out_decoder_is_transformers_decoder():
    model = tiny_english_model()
    states = torch.randn(2, 30, model.config.d_model)
    ids = torch.tensor([[50257, 50362, 440, 1000], [50257, 50362, 7, 8]])
    projection = model.get_output_embeddings().weight.t()
    with torch.no_grad():
        expected = model(encoder_outputs=(states,), decoder_input_ids=ids).logits
        first, cache = decoder_step(model.model.decoder, projection, ids[:, :2], states, None)
        following, _ = decoder_step(model.model.decoder, projection, ids[:, 2:], None, cache)  # two tokens after a past
    torch.testing.assert_close(first, expected[:, :2], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(following, expected[:, 2:], rtol=1e-4, atol=1e-4)


def test_the_merged_decoder_runs_both_branches_like_pytorch(optimum_folder):
    model, folder, _ = optimum_folder
    session = ort.InferenceSession(str(onnx_file(folder, "decoder_model_merged")), providers=["CPUExecutionProvider"])
    layers, heads = model.config.decoder_layers, model.config.decoder_attention_heads
    states = torch.randn(2, 1500, model.config.d_model)
    ids = torch.tensor([[50257, 50362], [50257, 50362]])
    with torch.no_grad():
        expected = model(encoder_outputs=(states,), decoder_input_ids=torch.cat([ids, ids[:, :1] * 0 + 440], 1)).logits
    feed = {"input_ids": ids.numpy(), "encoder_hidden_states": states.numpy(), "use_cache_branch": np.array([False])}
    feed |= {n: np.zeros((2, heads, 0, model.config.d_model // heads), np.float32)
             for n in cache_names(layers, "past_key_values")}
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
    np.testing.assert_allclose(outputs["logits"], expected[:, :2].numpy(), rtol=1e-4, atol=1e-4)
    following = {"input_ids": np.full((2, 1), 440), "encoder_hidden_states": states.numpy(),
                 "use_cache_branch": np.array([True])}
    following |= {n.replace("present", "past_key_values"): v for n, v in outputs.items() if n != "logits"}
    after = dict(zip([o.name for o in session.get_outputs()], session.run(None, following)))
    np.testing.assert_allclose(after["logits"], expected[:, 2:].numpy(), rtol=1e-4, atol=1e-4)
    assert after["present.0.decoder.key"].shape[2] == 3
    np.testing.assert_array_equal(after["present.1.encoder.value"], outputs["present.1.encoder.value"])  # passed on


def test_the_folder_decodes_like_lite_whisper(optimum_folder):
    _, folder, manifest = optimum_folder
    parity = manifest["parity"]
    assert parity["encoder_relative_error_float32"] < 1e-4 and parity["encoder_relative_error_int8"] < 0.2
    assert parity["transcripts_identical_float32"] == 2, (parity["transcripts_lite_whisper"], parity["transcripts_float32"])
    assert len(parity["transcripts_int8"]) == 2
    # the runner's batch changes nothing
    runner = OptimumOnnxWhisper(folder)
    processor = tiny_processor()
    features = processor.feature_extractor([a for _, a in clips(2)], sampling_rate=16000, return_tensors="np").input_features
    together = runner.generate(features, [50257, 50362], 12)
    assert together == [runner.generate(features[i: i + 1], [50257, 50362], 12)[0] for i in range(2)]


def test_cli_exports_the_optimum_layout_and_refuses_what_it_does_not_take(tmp_path, capsys, calibration_folder):
    dense = save_model(tiny_english_model(), tiny_processor(), tmp_path / "dense")
    for option in (["--int8"], ["--decoder", "float32"], ["--threads", "2"]):
        assert main(["export", str(dense), "-o", str(tmp_path / "never"), "--format", "optimum", *option]) == 2
        assert f"--format optimum does not take {option[0]}" in capsys.readouterr().err
        assert not (tmp_path / "never").exists()
    # too big for single-file graphs: refused before any weight is made
    assert main(["export", "--random-weights", "large-v3", "--format", "optimum", "-o", str(tmp_path / "never")]) == 2
    assert "635M parameters" in capsys.readouterr().err and not (tmp_path / "never").exists()
    out = tmp_path / "dense-onnx"
    assert main(["export", str(dense), "-o", str(out), "--format", "optimum", "--data", str(calibration_folder),
                 "--calibration", str(calibration_folder), "--parity-clips", "2"]) == 0
    printed = capsys.readouterr().out
    assert "greedy transcripts identical to lite-whisper's: 2/2 (float32)" in printed
    assert (out / "onnx" / "decoder_model_merged_quantized.onnx").is_file() and (out / "README.md").is_file()
    assert main(["export", str(dense), "-o", str(out), "--format", "optimum"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_model_cards_say_what_the_folder_holds(tmp_path):
    model = lite_english_model()
    report = {"encoder_params_before": 1000, "encoder_params_after": 750, "encoder_flops_before": 4e9,
              "encoder_flops_after": 3.2e9, "rank_rule": "allocate", "threshold": "allocate-params0.75",
              "rank_multiple": 16, "calibration_clips": 334, "calibration_data": "calibration.txt",
              "distillation": {"steps": 32}, "lite_whisper_version": "0.1.0", "wall_seconds": 285.0}
    card = model_card(model, source="tiny.en", folder=tmp_path / "tiny.en-lite", report=report,
                      results=[{"measure": "WER %", "on": "dev (155 clips)", "value": "6.50",
                                "command": "lite-whisper eval x --data dev"}])
    assert "license: apache-2.0" in card and "| encoder parameters | 0.00M | 0.00M | 0.75 |" in card
    assert "| encoder FLOPs (30 s window) | 4.0 G | 3.2 G | 0.80 |" in card and "distillation: 32 steps" in card
    assert "| WER % | dev (155 clips) | 6.50 | `lite-whisper eval x --data dev` |" in card
    assert "Nothing measured" in model_card(model, source="tiny.en", folder=tmp_path / "x")
    saved = save_model(tiny_english_model(), tiny_processor(), tmp_path / "saved")  # every saved folder has one
    assert "no compression report came with it" in (saved / "README.md").read_text()


def test_eval_and_bench_record_their_results_on_the_card(tmp_path, capsys, calibration_folder):
    folder = save_model(tiny_english_model(), tiny_processor(), tmp_path / "model")
    (folder / "README.md").write_text(model_card(tiny_english_model(), source="tiny.en", folder=folder))
    (calibration_folder / "transcripts.tsv").write_text("path\ttext\n" + "".join(f"clip{i}.wav\tsome words\n" for i in range(6)))
    assert main(["eval", str(folder), "--data", str(calibration_folder), "--record", "--no-progress",
                 "--max-new-tokens", "4"]) == 0
    recorded = json.loads((folder / "lite_whisper_results.json").read_text())
    assert [r["on"] for r in recorded] == [f"{calibration_folder} (6 clips)"]
    assert recorded[0]["command"].startswith(f"lite-whisper eval {folder}")
    assert main(["bench", str(folder), "--baseline", str(folder), "--repeats", "1", "--warmup", "0", "--record"]) == 0
    recorded = json.loads((folder / "lite_whisper_results.json").read_text())
    assert [r["measure"] for r in recorded] == ["WER % (greedy)", f"encoder speed-up vs {folder}, batch 1"]
    card = (folder / "README.md").read_text()
    assert "Nothing measured" not in card and f"| {recorded[0]['value']} |" in card and "FLOPs predict 1.00x" in card
    assert card.index("## Measured") < card.index("## Use it")
    assert main(["eval", "tiny.en", "--record"]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["bench", str(folder), "--calibration-cost", "--record"]) == 2
    assert "give a MODEL folder" in capsys.readouterr().err
    assert licence_of("openai/whisper-base") == "apache-2.0" and licence_of("someone/model") == "other"
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "README.md").write_text("---\nlicense: mit\n---\n")
    assert licence_of(str(tmp_path / "base")) == "mit"
