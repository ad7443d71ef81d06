"""Low-rank Whisper modules: exact full-rank reconstruction, reduced-dimension attention, cost model."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_whisper_config, tiny_whisper_model

from lite_whisper.lowrank.convert import to_lite_whisper
from lite_whisper.lowrank.modeling_lite_whisper import (
    LOW_RANK_TARGETS,
    LiteWhisperConfig,
    LiteWhisperForConditionalGeneration,
    LowRankLinear,
    attention_flops,
)

D_MODEL, HEADS, LAYERS, SEQ_LEN = 64, 4, 2, 1500  # the tiny model: head width 16


def features(batch: int = 2, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 80, 3000, generator=torch.Generator().manual_seed(seed)).to(dtype)


def full_rank_factors(model, names=tuple(LOW_RANK_TARGETS), seed: int = 0):
    """METHOD §4 with k = d_out: A = W^T V, B = V^T, b' = mu + (b - mu) V V^T, V orthonormal."""
    generator = torch.Generator().manual_seed(seed)
    factors = {}
    for layer_index, layer in enumerate(model.model.encoder.layers):
        for name in names:
            linear = layer.get_submodule(LOW_RANK_TARGETS[name][0])
            weight = linear.weight.detach()
            d_out, dtype = weight.shape[0], weight.dtype
            bias = linear.bias.detach() if linear.bias is not None else torch.zeros(d_out, dtype=dtype)
            v, _ = torch.linalg.qr(torch.randn(d_out, d_out, generator=generator, dtype=torch.float64))
            v = v.to(dtype)
            mu = torch.randn(d_out, generator=generator, dtype=torch.float64).to(dtype)  # any mean cancels at full rank
            factors[layer_index, name] = (weight.T @ v, v.T, mu + (bias - mu) @ v @ v.T)
    return factors


def random_factors(ranks: dict[str, int], dtype=torch.float32, seed: int = 0, layers: int = LAYERS):
    """Random factors scaled so activations stay O(1)."""
    generator = torch.Generator().manual_seed(seed)
    shapes = {"fc1": (D_MODEL, 256), "fc2": (256, D_MODEL)}
    factors = {}
    for layer in range(layers):
        for name, rank in ranks.items():
            d_in, d_out = shapes.get(name, (D_MODEL, D_MODEL))
            a = torch.randn(d_in, rank, generator=generator, dtype=torch.float64) / d_in**0.5
            b = torch.randn(rank, d_out, generator=generator, dtype=torch.float64) / rank**0.5
            bias = torch.randn(d_out, generator=generator, dtype=torch.float64)
            factors[layer, name] = (a.to(dtype), b.to(dtype), bias.to(dtype))
    return factors


def set_path(model, path: str) -> None:
    for layer in model.model.encoder.layers:
        layer.self_attn.path = path


@torch.no_grad()
def test_low_rank_linear_computes_x_a_b_plus_bias():
    a, b, bias = torch.randn(8, 3), torch.randn(3, 5), torch.randn(5)
    module = LowRankLinear.from_factors(a, b, bias)
    x = torch.randn(2, 7, 8)
    assert (module.in_features, module.out_features, module.rank) == (8, 5, 3)
    assert isinstance(module.down, torch.nn.Linear) and isinstance(module.up, torch.nn.Linear)
    torch.testing.assert_close(module(x), (x @ a) @ b + bias)


@torch.no_grad()
def test_full_rank_factorisation_reproduces_dense_model():
    dense = tiny_whisper_model().double()
    lite = to_lite_whisper(dense, full_rank_factors(dense))
    full_ranks = {"q_proj": 64, "k_proj": 64, "v_proj": 64, "out_proj": 64, "fc1": 256, "fc2": 64}
    assert lite.config.low_rank_config == [full_ranks] * LAYERS
    x = features(dtype=torch.float64)
    expected = dense.model.encoder(x).last_hidden_state
    actual = lite.model.encoder(x).last_hidden_state
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-12)
    decoder_input_ids = torch.tensor([[50258, 50259, 50360]] * 2)
    torch.testing.assert_close(
        lite(input_features=x, decoder_input_ids=decoder_input_ids).logits,
        dense(input_features=x, decoder_input_ids=decoder_input_ids).logits,
        rtol=0,
        atol=1e-12,
    )


def test_conversion_shares_weights_and_keeps_head_tied():
    dense = tiny_whisper_model()
    lite = to_lite_whisper(dense, random_factors({"q_proj": 8}))
    assert lite.proj_out.weight is lite.model.decoder.embed_tokens.weight
    assert lite.model.decoder.embed_tokens.weight.data_ptr() == dense.model.decoder.embed_tokens.weight.data_ptr()
    assert isinstance(dense.model.encoder.layers[0].self_attn.q_proj, torch.nn.Linear)  # input untouched
    assert lite.generation_config.to_dict() == dense.generation_config.to_dict()
    assert lite.config.low_rank_config == [{"q_proj": 8}, {"q_proj": 8}]


def test_unknown_target_is_rejected():
    with pytest.raises(ValueError, match="no low-rank target"):
        factor = (torch.ones(64, 8), torch.ones(8, 64), torch.ones(64))
        to_lite_whisper(tiny_whisper_model(), {(0, "encoder_attn"): factor})


@torch.no_grad()
@pytest.mark.parametrize("low_rank_config", [None, []])
def test_without_low_rank_config_it_is_plain_whisper(low_rank_config):
    dense = tiny_whisper_model()
    settings = tiny_whisper_config().to_dict()
    del settings["model_type"]
    config = LiteWhisperConfig(**settings, low_rank_config=low_rank_config)
    lite = LiteWhisperForConditionalGeneration(config).eval()
    lite.load_state_dict(dense.state_dict())
    x, decoder_input_ids = features(batch=1), torch.tensor([[50258, 50259]])
    torch.testing.assert_close(
        lite(input_features=x, decoder_input_ids=decoder_input_ids).logits,
        dense(input_features=x, decoder_input_ids=decoder_input_ids).logits,
        rtol=0,
        atol=0,
    )


@torch.no_grad()
@pytest.mark.parametrize("ranks", [(8, 8, 8), (16, 16, 16), (32, 32, 32), (48, 48, 48), (8, 24, 40)])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-11), (torch.float32, 2e-5)])
def test_reduced_attention_equals_ordinary(ranks, dtype, tolerance):
    r_q, r_k, r_v = ranks
    dense = tiny_whisper_model().to(dtype)
    lite = to_lite_whisper(dense, random_factors({"q_proj": r_q, "k_proj": r_k, "v_proj": r_v}, dtype=dtype))
    x = features(batch=3, dtype=dtype)
    outputs = {}
    for path in ("ordinary", "reduced"):
        set_path(lite, path)
        assert lite.model.encoder.layers[0].self_attn.uses_reduced_path == (path == "reduced")
        outputs[path] = lite.model.encoder(x).last_hidden_state
    scale = outputs["ordinary"].abs().max()
    torch.testing.assert_close(outputs["reduced"] / scale, outputs["ordinary"] / scale, rtol=0, atol=tolerance)


@torch.no_grad()
def test_reduced_attention_returns_the_same_attention_weights():
    lite = to_lite_whisper(tiny_whisper_model(), random_factors({"q_proj": 8, "k_proj": 8, "v_proj": 8}))
    lite.set_attn_implementation("eager")
    weights = {}
    for path in ("ordinary", "reduced"):
        set_path(lite, path)
        weights[path] = lite.model.encoder(features(batch=1), output_attentions=True).attentions
    assert len(weights["reduced"]) == LAYERS and weights["reduced"][0].shape == (1, HEADS, SEQ_LEN, SEQ_LEN)
    for reduced, ordinary in zip(weights["reduced"], weights["ordinary"]):
        torch.testing.assert_close(reduced, ordinary, rtol=0, atol=1e-6)


def test_attention_flops_by_hand():
    # n = 1500, d = 64, 4 heads; FLOPs = 2 x multiply-adds.
    # ordinary, ranks 8: q/k/v 3 * n*8*(64+64) = 4_608_000; q k^T and P v: 2 * n^2 * 64 = 288_000_000
    assert attention_flops(1500, 64, 4, 8, 8, 8, reduced=False) == 2 * (4_608_000 + 288_000_000)
    # reduced, ranks 8: down 3 * n*64*8 = 2_304_000; q1 M_h: 4*n*8*8 = 384_000;
    # scores and P v1: 4 * n^2 * (8+8) = 144_000_000; (P v1) Bv: n*8*64 = 768_000
    assert attention_flops(1500, 64, 4, 8, 8, 8, reduced=True) == 2 * (2_304_000 + 384_000 + 144_000_000 + 768_000)
    # dense q, k, v: 3 * n*64*64 = 18_432_000
    assert attention_flops(1500, 64, 4, None, None, None, reduced=False) == 2 * (18_432_000 + 288_000_000)
    # ranks 32 (twice the head width): the reduced form costs about twice as much
    assert attention_flops(1500, 64, 4, 32, 32, 32, reduced=False) == 2 * (18_432_000 + 288_000_000)
    reduced_32 = 9_216_000 + 6_144_000 + 576_000_000 + 3_072_000
    assert attention_flops(1500, 64, 4, 32, 32, 32, reduced=True) == 2 * reduced_32
    with pytest.raises(ValueError, match="needs low-rank q, k and v"):
        attention_flops(1500, 64, 4, None, 8, 8, reduced=True)
    # unequal ranks 8, 4, 24: keys and values padded to width 24; down 1500*64*36 = 3_456_000,
    # q1 M_h 4*1500*8*24 = 1_152_000, scores and P v1 2 * 4*1500^2*24 = 432_000_000, (P v1) Bv 1500*24*64 = 2_304_000
    assert attention_flops(1500, 64, 4, 8, 4, 24, reduced=True) == 2 * 438_912_000


@pytest.mark.parametrize(
    "ranks, reduced",
    [
        ({"q_proj": 8, "k_proj": 8, "v_proj": 8}, True),  # well below the head width (16)
        ({"q_proj": 16, "k_proj": 16, "v_proj": 16}, True),  # at the head width: saves the up-projections
        ({"q_proj": 32, "k_proj": 32, "v_proj": 32}, False),
        ({"q_proj": 48, "k_proj": 8, "v_proj": 48}, False),
        ({"k_proj": 8, "v_proj": 8}, False),  # dense q: no reduced form
    ],
)
def test_cost_model_picks_the_cheaper_path(ranks, reduced):
    lite = to_lite_whisper(tiny_whisper_model(), random_factors(ranks))
    attention = lite.model.encoder.layers[0].self_attn
    assert attention.path == "auto" and attention.uses_reduced_path == reduced


def test_forcing_the_reduced_path_needs_low_rank_qkv():
    lite = to_lite_whisper(tiny_whisper_model(), random_factors({"k_proj": 8, "v_proj": 8}))
    with pytest.raises(ValueError, match="needs low-rank q_proj, k_proj and v_proj"):  # refused when set
        set_path(lite, "reduced")
    with pytest.raises(ValueError, match="'auto', 'reduced' or 'ordinary'"):
        set_path(lite, "fast")
    assert lite.model.encoder.layers[0].self_attn.path == "auto"


@torch.no_grad()
def test_generate_matches_dense_whisper():
    dense = tiny_whisper_model().double()
    generation_config = dense.generation_config
    generation_config.lang_to_id = {"<|en|>": 50259, "<|de|>": 50261}
    generation_config.task_to_id = {"transcribe": 50359, "translate": 50358}
    generation_config.no_timestamps_token_id = 50363
    generation_config.prev_sot_token_id = 50361
    generation_config.is_multilingual = True
    lite = to_lite_whisper(dense, full_rank_factors(dense))
    x = features(batch=1, dtype=torch.float64)
    options = [
        dict(language="en", task="transcribe", return_timestamps=True, max_new_tokens=4),
        # a prompt does not start with <|startoftranscript|>: Whisper must not prepend one
        dict(language="de", task="translate", prompt_ids=torch.tensor([50361, 400, 401]), max_new_tokens=3),
    ]
    for kwargs in options:
        torch.testing.assert_close(lite.generate(x, **kwargs), dense.generate(x, **kwargs), rtol=0, atol=0)
