"""Benchmark plumbing on tiny random models: FLOP counts by hand, JSON schema, random architectures, CLI errors.

No timing assertions: these run on loaded CI machines.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import tiny_english_model, tiny_processor, tiny_whisper_model

from lite_whisper.benchmark.bench import FAST_ROUTE, PLAIN, benchmark
from lite_whisper.benchmark.end_to_end import EncoderTimed
from lite_whisper.benchmark.results import BatchResult, BenchResult, Ratio, Timing
from lite_whisper.cli.bench import add_parser as add_bench_command
from lite_whisper.cli.bench import parse_batch_sizes
from lite_whisper.cli.common import CLIError
from lite_whisper.lowrank.convert import to_lite_whisper
from lite_whisper.lowrank.cost import break_even_rank, breaks_even, encoder_flops, encoder_params
from lite_whisper.lowrank.modeling_lite_whisper import LowRankLinear
from lite_whisper.models.architectures import ARCHITECTURES
from lite_whisper.models.random import (
    fraction_rank,
    layer_ranks,
    random_model,
    whisper_config,
)
from lite_whisper.runtime.cpu_route import onednn_usable, routed_layers
from lite_whisper.runtime.pytorch import prepare_for_inference
from lite_whisper.transcription.engine import EngineBase
from lite_whisper.transcription.types import DecodingOptions

# The tiny test config: d_model 64, 2 layers, 4 heads (head width 16), ffn 256, 80 mel bins.
D, LAYERS, HEADS, FFN, MELS = 64, 2, 4, 256, 80
N, T = 1500, 3000  # encoder frames, mel frames

CONVS = 2 * T * D * MELS * 3 + 2 * N * D * D * 3  # conv1 (stride 1, 3000 outputs), conv2 (stride 2, 1500)
DENSE_LINEARS = 2 * N * (4 * D * D + 2 * D * FFN)  # q, k, v, out_proj, fc1, fc2
ATTENTION = 2 * (N * N * D) * 2  # scores q k^T and values P v, over all heads


def random_factors(ranks: dict[str, int], seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    shapes = {"fc1": (D, FFN), "fc2": (FFN, D)}
    factors = {}
    for layer, layer_ranks_ in enumerate(ranks):
        for name, rank in layer_ranks_.items():
            d_in, d_out = shapes.get(name, (D, D))
            factors[layer, name] = (
                torch.randn(d_in, rank, generator=generator) / d_in**0.5,
                torch.randn(rank, d_out, generator=generator) / rank**0.5,
                torch.zeros(d_out),
            )
    return factors


def test_flops_of_dense_encoder_by_hand():
    assert encoder_flops(tiny_whisper_model()) == CONVS + LAYERS * (DENSE_LINEARS + ATTENTION)


def test_flops_of_low_rank_layer_and_reduced_attention_by_hand():
    # Layer 0: fc1 at rank 16 (attention stays ordinary). Layer 1: q, k, v at rank 8 < head width 16,
    # so attention runs in the reduced dimension (METHOD.md §5).
    lite = to_lite_whisper(tiny_whisper_model(), random_factors([{"fc1": 16}, {"q_proj": 8, "k_proj": 8, "v_proj": 8}]))
    assert [layer.self_attn.uses_reduced_path for layer in lite.model.encoder.layers] == [False, True]
    layer0 = DENSE_LINEARS - 2 * N * D * FFN + 2 * N * 16 * (D + FFN) + ATTENTION
    r = 8
    reduced_attention = 2 * (
        N * D * 3 * r  # the three down-projections, shared by all heads
        + HEADS * N * r * r  # q1 M_h per head
        + HEADS * N * N * r  # scores (q1 M_h + u_h) k1^T
        + HEADS * N * N * r  # P v1
        + N * r * D  # (P v1) Bv_h for all heads
    )
    layer1 = reduced_attention + 2 * N * (D * D + 2 * D * FFN)  # + out_proj, fc1, fc2
    assert encoder_flops(lite) == CONVS + layer0 + layer1


def test_batch_result_ratios_known_answer():
    # model 10/20/30 ms, stock baseline 20/30/90, same-kernel baseline 15/25/45; FLOPs predict 2.5x
    result = BatchResult.of(4, [10.0, 20.0, 30.0], [20.0, 30.0, 90.0], [15.0, 25.0, 45.0], predicted=2.5)
    assert result.speedup == Ratio(median=1.5, min=1.5, max=3.0)  # 30/20; pairs 2.0, 1.5, 3.0
    assert result.same_kernels_speedup == Ratio(median=1.25, min=1.25, max=1.5)  # 25/20; pairs 1.5, 1.25, 1.5
    assert result.flop_efficiency == pytest.approx(0.5)  # 1.25 / 2.5: the same-kernel ratio, not 1.5
    assert result.model_items_per_second == pytest.approx(200.0)  # 4 inputs in 20 ms
    # the baseline already on the model's kernels: both ratios are that one measurement
    same = BatchResult.of(1, [10.0, 20.0, 30.0], [20.0, 30.0, 90.0], None, predicted=3.0)
    assert same.same_kernels_speedup == same.speedup and same.flop_efficiency == pytest.approx(0.5)


@pytest.fixture
def flop_clock(monkeypatch):
    """Encoder timings on a clock that reads the encoder's FLOPs (1 ms per GFLOP and input): known answers."""
    from lite_whisper.benchmark import encoder_timing

    monkeypatch.setattr(encoder_timing, "time_encoder",
                        lambda encoder, features: encoder_flops(encoder) * features.shape[0] / 1e9)


def test_benchmark_json_schema(tmp_path, flop_clock):
    dense = tiny_whisper_model()
    lite = to_lite_whisper(dense, random_factors([{"fc1": 16, "fc2": 16}] * LAYERS))
    result = benchmark(lite, dense, batch_sizes=(1, 2), repeats=2, warmup=1, threads=1, model_name="lite")
    assert isinstance(result, BenchResult)
    data = json.loads(result.save(tmp_path / "bench.json").read_text())
    assert data["schema_version"] == 3
    assert data["graphed_results"] == []  # CUDA graphs only on a GPU
    # FLOPs by hand: two fc1/fc2 pairs at rank 16 instead of dense
    saved = LAYERS * (2 * 2 * N * D * FFN - 2 * 2 * N * 16 * (D + FFN))
    dense_flops = CONVS + LAYERS * (DENSE_LINEARS + ATTENTION)
    assert data["model_flops"] == dense_flops - saved
    assert [entry["batch_size"] for entry in data["results"]] == [1, 2]
    for entry in data["results"]:
        batch = entry["batch_size"]
        assert entry["model_ms"]["samples"] == [round((dense_flops - saved) * batch / 1e9, 3)] * 2
        assert entry["baseline_ms"]["median"] == pytest.approx(dense_flops * batch / 1e9)
        assert entry["speedup"]["median"] == pytest.approx(dense_flops / (dense_flops - saved))
        assert entry["flop_efficiency"] == pytest.approx(1.0)  # this clock turns every FLOP saved into time
    assert data["baseline_params"]["encoder"] - data["model_params"]["encoder"] == LAYERS * (
        2 * D * FFN + FFN + D - 2 * 16 * (D + FFN) - FFN - D)
    assert data["model_params"]["decoder"] == data["baseline_params"]["decoder"] > 0
    assert data["model"] == "lite" and data["model_info"]["disk_bytes"] is None
    assert data["model_info"]["kernels"] == data["baseline_info"]["kernels"] == PLAIN  # not put on the route
    assert data["same_kernels_baseline_info"] is None  # the baseline already runs on the model's kernels
    environment = data["environment"]
    assert environment["threads"] == 1 and environment["torch"] == torch.__version__
    assert {"cpu", "glibc_tunables", "load_average", "onednn_fused_linear_usable"} <= set(environment)
    assert data["peak_rss_bytes"] >= data["model_info"]["weight_bytes"]  # both models were in memory
    table = result.table()
    assert "vs baseline" in table and "vs same kernels" in table and "FLOP-predicted speedup" in table


@pytest.mark.skipif(not onednn_usable(), reason="oneDNN's fused linear is not usable here: no fast CPU route")
def test_a_model_on_the_fast_route_is_also_timed_against_the_baseline_on_it(flop_clock):
    dense = tiny_whisper_model()
    lite = prepare_for_inference(to_lite_whisper(dense, random_factors([{"fc1": 16, "fc2": 16}] * LAYERS)))
    data = benchmark(lite, dense, repeats=1, warmup=0).to_dict()
    assert data["model_info"]["kernels"] == FAST_ROUTE and data["baseline_info"]["kernels"] == PLAIN
    assert data["same_kernels_baseline_info"]["kernels"] == FAST_ROUTE
    assert data["same_kernels_baseline_info"]["encoder_flops"] == data["baseline_info"]["encoder_flops"]
    assert routed_layers(dense) == 0  # the baseline itself stays stock transformers


def test_cli_times_random_weights_with_both_ratios(tmp_path, capsys):
    """`bench --random-weights` on the CPU (it crashed once, with the decoder left on the meta device)."""
    output = tmp_path / "random.json"
    assert run_cli(["bench", "--random-weights", "tiny", "--rank-fraction", "0.5", "--threads", "1", "--repeats", "1",
                    "--warmup", "0", "--output", str(output)]) == 0
    data = json.loads(output.read_text())
    assert data["model_info"]["name"] == "random tiny @ 0.5 x break-even rank"
    assert data["baseline_info"]["kernels"] == PLAIN and data["baseline_info"]["encoder_params"] == 7_632_384
    entry = data["results"][0]
    assert entry["speedup"] is not None and entry["same_kernels_speedup"] is not None
    if onednn_usable():
        assert data["model_info"]["kernels"] == data["same_kernels_baseline_info"]["kernels"] == FAST_ROUTE
    assert "vs same kernels" in capsys.readouterr().out


def test_benchmark_without_baseline():
    result = benchmark(tiny_whisper_model(), repeats=1, warmup=0)
    data = result.to_dict()
    assert data["baseline"] is None and data["flops_speedup"] is None
    assert data["results"][0]["baseline_ms"] is None and data["results"][0]["speedup"] is None
    assert data["results"][0]["same_kernels_speedup"] is None
    assert "batch" in result.table()


def test_benchmark_end_to_end_on_a_clip(tmp_path):
    audio = tmp_path / "clip.wav"
    sf.write(audio, 0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32), 16000)
    model, processor = tiny_english_model(), tiny_processor()
    result = benchmark(model, model, repeats=1, warmup=0, data=str(audio), processor=processor,
                       options=DecodingOptions(max_new_tokens=2))
    end_to_end = result.to_dict()["end_to_end"]
    assert set(end_to_end) == {"model", "baseline"}
    for entry in end_to_end.values():
        assert entry["clips"] == 1 and entry["audio_seconds"] == pytest.approx(1.0)
        assert 0 < entry["encoder_share"] <= 1


def test_the_encoder_timer_adds_up_encode_calls_only():
    class Slow(EngineBase):  # an engine whose encoder takes 20 ms and whose decoder takes none
        name = "slow"

        def encode(self, features):
            time.sleep(0.02)
            return features

        def decode(self, encoded, options):
            return encoded

    timed = EncoderTimed(Slow())
    assert timed.decode(timed.encode([1]), None) == [1] and timed.name == "slow"
    timed.encode([2])
    assert timed.calls == 2 and 0.04 <= timed.seconds < 1.0


def test_benchmark_rejects_bad_arguments():
    model = tiny_whisper_model()
    for kwargs in (dict(batch_sizes=()), dict(batch_sizes=(0,)), dict(repeats=0), dict(warmup=-1), dict(threads=0)):
        with pytest.raises(ValueError):
            benchmark(model, **kwargs)


def test_timing_summary():
    timing = Timing.of([3.0, 1.0, 2.0, 10.0])
    assert (timing.median, timing.min, timing.max) == (2.5, 1.0, 10.0)


def test_break_even_and_fraction_ranks():
    assert break_even_rank(512, 512) == 256
    assert break_even_rank(512, 2048) == pytest.approx(409.6)
    assert breaks_even(256, 512, 512) and not breaks_even(240, 512, 512)  # the same line, as a predicate
    assert fraction_rank(512, 512, 0.5) == 128
    assert fraction_rank(512, 2048, 0.5) == 192  # 204.8 rounded down to a multiple of 16
    assert fraction_rank(512, 512, 0.01) == 16  # never below one multiple
    # large-v3: break-even 640 (attention) and 1024 (MLP)
    assert layer_ranks(whisper_config("large-v3"), 0.25) == {
        "q_proj": 160, "k_proj": 160, "v_proj": 160, "out_proj": 160, "fc1": 256, "fc2": 256
    }
    for fraction in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError):
            fraction_rank(512, 512, fraction)


@pytest.mark.parametrize("fraction", [0.25, 0.5, 0.75])
def test_random_model_ranks_are_fraction_of_break_even(fraction):
    model = random_model("tiny", fraction)
    shape = ARCHITECTURES["tiny"]
    assert len(model.model.encoder.layers) == shape.encoder_layers
    for layer in model.model.encoder.layers:
        modules = dict(q_proj=layer.self_attn.q_proj, k_proj=layer.self_attn.k_proj, v_proj=layer.self_attn.v_proj,
                       out_proj=layer.self_attn.out_proj, fc1=layer.fc1, fc2=layer.fc2)
        for name, module in modules.items():
            assert isinstance(module, LowRankLinear), name
            exact = fraction * break_even_rank(module.in_features, module.out_features)
            assert module.rank % 16 == 0 and exact - 16 < module.rank <= exact, (name, module.rank, exact)
    assert model.model.encoder.conv1.in_channels == 80 and model.config.d_model == 384
    assert next(model.model.decoder.parameters()).is_meta  # the decoder is never allocated
    with torch.inference_mode():
        out = model.model.encoder(torch.randn(1, 80, 3000)).last_hidden_state
    assert out.shape == (1, 1500, 384) and torch.isfinite(out).all()


def test_random_dense_model_and_unknown_architecture():
    dense = random_model("tiny", None)
    assert type(dense).__name__ == "WhisperForConditionalGeneration"
    assert encoder_params(dense) == 7_632_384  # whisper-tiny's encoder, as the LiteASR model cards count it
    assert ARCHITECTURES["large-v3"].n_mels == 128 and ARCHITECTURES["large-v3-turbo"].decoder_layers == 4
    with pytest.raises(ValueError, match="unknown architecture"):
        random_model("huge", 0.5)


# ----------------------------------------------------------------------------- CLI


def run_cli(argv: list[str]) -> int:
    """The bench subcommand on a parser of its own (cli.py wires the same function in)."""
    parser = argparse.ArgumentParser(prog="lite-whisper")
    add_bench_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


@pytest.mark.parametrize("text", ["1,x", "0", "", "1,-4", "1.5", "1,,4"])
def test_cli_rejects_bad_batch_size_list(text):
    with pytest.raises(CLIError, match="--batch-size"):
        run_cli(["bench", "--random-weights", "tiny", "--batch-size", text])


def test_batch_size_list_parses():
    assert parse_batch_sizes("1,4") == (1, 4)
    assert parse_batch_sizes(" 4, 1 ,4") == (4, 1)


def test_cli_rejects_unknown_architecture():
    with pytest.raises(CLIError, match="unknown architecture 'huge'.*large-v3-turbo"):
        run_cli(["bench", "--random-weights", "huge"])


@pytest.mark.parametrize("fraction", ["0", "1", "1.5", "-0.25"])
def test_cli_rejects_rank_fraction_outside_unit_interval(fraction):
    with pytest.raises(CLIError, match="--rank-fraction"):
        run_cli(["bench", "--random-weights", "tiny", "--rank-fraction", fraction])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench"], "give a MODEL"),
        (["bench", "tiny.en", "--rank-fraction", "0.5"], "only applies with --random-weights"),
        (["bench", "--random-weights", "tiny", "--data", "x"], "random weights"),
        (["bench", "tiny.en", "--repeats", "0"], "--repeats"),
        (["bench", "tiny.en", "--limit", "3"], "only applies with --data"),
        (["bench", "tiny.en", "--max-new-tokens", "3"], "only applies with --data"),
        (["bench", "tiny.en", "--device", "foo"], "not a torch device"),
        (["bench", "tiny.en", "--encoder", "int8"], "only applies with --against"),
        (["bench", "tiny.en", "--calibration-cost", "--data", "x"], "--data does not apply with --calibration-cost"),
        (["bench", "tiny.en", "--calibration-cost", "--baseline", "base"], "--baseline does not apply"),
        (["bench", "x", "--against", "faster-whisper", "--device", "cpu"], "--device does not apply with --against"),
        (["bench", "x", "--against", "faster-whisper", "--calibration-cost"], "two different measurements"),
        (["bench", "tiny.en", "--decode-batch-size", "4"], "only applies with --data"),
    ],
)
def test_cli_rejects_inconsistent_options(argv, message):
    with pytest.raises(CLIError, match=message):
        run_cli(argv)


def test_cli_bench_folder_writes_json(tmp_path, capsys):
    from lite_whisper.models.loading import save_model

    folder = save_model(tiny_whisper_model(), tiny_processor(), tmp_path / "tiny")
    output = tmp_path / "bench.json"
    code = run_cli(["bench", str(folder), "--baseline", str(folder), "--repeats", "1", "--warmup", "0",
                    "--batch-size", "1,2", "--threads", "1", "--output", str(output)])
    assert code == 0
    data = json.loads(output.read_text())
    assert [entry["batch_size"] for entry in data["results"]] == [1, 2]
    on_disk = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    assert data["model_info"]["disk_bytes"] == on_disk
    assert "speedup" in capsys.readouterr().out



def test_warm_up_goes_on_until_passes_agree(monkeypatch):
    """Warm-up lasts at least `warmup` passes and then until two in a row agree within 5% (clocks, autotuning,
    graph capture settling); the timed passes come after it, and warmup=0 times at once."""
    from lite_whisper.benchmark import encoder_timing

    passes = iter([50.0, 40.0, 30.0, 10.0, 10.2, 10.1] + [9.0] * 20)
    monkeypatch.setattr(encoder_timing, "time_encoder", lambda encoder, features: next(passes))
    assert encoder_timing.time_interleaved([object()], torch.zeros(1), repeats=2, warmup=1) == [[10.1, 9.0]]
    passes = iter([50.0, 10.0, 10.2, 30.0, 30.0] + [9.0] * 20)
    assert encoder_timing.time_interleaved([object()], torch.zeros(1), repeats=1, warmup=4) == [[9.0]]  # >= 4
    passes = iter([50.0, 40.0])
    assert encoder_timing.time_interleaved([object()], torch.zeros(1), repeats=2, warmup=0) == [[50.0, 40.0]]
    falling = [100.0 * 0.9 ** n for n in range(20)]  # 10% faster every pass: never settles
    passes = iter(falling)
    assert encoder_timing.time_interleaved([object()], torch.zeros(1), repeats=1, warmup=1) == [[falling[7]]]  # 4x1+3
