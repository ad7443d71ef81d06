"""Streaming moments and calibration statistics: exactness against whole-data and hand-captured references."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_whisper_model
from safetensors.torch import save_file

from lite_whisper.calibration import statistics as statistics_module
from lite_whisper.calibration.calibrate import collect_statistics
from lite_whisper.calibration.moments import Moments
from lite_whisper.calibration.statistics import CalibrationStatistics, ModelSignature
from lite_whisper.lowrank.targets import ATTENTION, LOW_RANK_TARGETS, MLP

ENCODER_FRAMES = 1500


def moments_of(x: torch.Tensor) -> Moments:
    """Reference moments straight from the definition, all rows at once in float64."""
    x = x.reshape(-1, x.shape[-1]).double()
    return Moments(count=x.shape[0], sum=x.sum(0), outer=x.T @ x)


def assert_moments_close(actual: Moments, expected: Moments, rtol: float = 1e-12) -> None:
    assert actual.count == expected.count
    scale = expected.outer.abs().max().item()
    torch.testing.assert_close(actual.sum, expected.sum, rtol=rtol, atol=rtol * scale)
    torch.testing.assert_close(actual.outer, expected.outer, rtol=rtol, atol=rtol * scale)


def anisotropic(rows: int, dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    scales = torch.logspace(1, -2, dim)
    return torch.randn(rows, dim, generator=generator) * scales + 3.0


def calibration_batches(sizes: list[list[int]], seed: int = 0):
    """Random log-mel batches of 30 s clips with the given audio lengths in encoder frames."""
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(len(frames), 80, 2 * ENCODER_FRAMES, generator=generator), torch.tensor(frames))
        for frames in sizes
    ]


def manual_output_moments(model, batches, exclude_padding: bool) -> dict[tuple[int, str], Moments]:
    """Capture every target's outputs by hand, whole batch at a time, and sum them in float64."""
    captured: dict[tuple[int, str], list[torch.Tensor]] = {}
    handles = []
    for index, layer in enumerate(model.model.encoder.layers):
        for name, (path, _) in LOW_RANK_TARGETS.items():
            def keep(module, args, output, key=(index, name)):
                captured.setdefault(key, []).append(output.detach().clone())

            handles.append(layer.get_submodule(path).register_forward_hook(keep))
    try:
        masks = []
        with torch.no_grad():
            for features, n_frames in batches:
                model.model.encoder(features)
                masks.append(torch.arange(ENCODER_FRAMES) < n_frames[:, None])
    finally:
        for handle in handles:
            handle.remove()
    result = {}
    for key, outputs in captured.items():
        rows = [y[mask] if exclude_padding else y.reshape(-1, y.shape[-1]) for y, mask in zip(outputs, masks)]
        result[key] = moments_of(torch.cat(rows))
    return result


def hook_counts(model) -> list[tuple[int, int]]:
    return [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]


# --- Moments ---------------------------------------------------------------------------


def test_chunked_and_merged_moments_equal_whole():
    x = anisotropic(1000, 12, seed=1).double()  # float64 rows: float64 products, exact to round-off
    whole = moments_of(x)

    chunked = Moments.zeros(12)
    for piece in x.split(137):
        chunked.update(piece)
    assert_moments_close(chunked, whole)

    first, second = Moments.zeros(12), Moments.zeros(12)
    first.update(x[:400])
    second.update(x[400:].reshape(20, 30, 12))  # leading dimensions are flattened
    assert_moments_close(first + second, whole)


def test_float32_activations_keep_their_covariance_beside_a_massive_mean():
    # A massive direction (mean 2000, as in Whisper's residual stream) beside unit-scale ones: uncentred
    # float32 products would lose the small covariance to cancellation; centred ones keep it.
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(3, 1500, 16, generator=generator, dtype=torch.float64) * torch.logspace(0, -2, 16, dtype=torch.float64)
    x[..., 0] += 2000.0
    moments = Moments.zeros(16)
    moments.update(x.float())  # the float32 activations calibration sees
    reference = moments_of(x.float().double())
    exact = reference.covariance()
    scale = exact.diagonal().sqrt()

    def error(measured: Moments) -> float:  # entry-wise, in units of sqrt(var_i var_j)
        return float(((measured.covariance() - exact).abs() / torch.outer(scale, scale)).max())

    assert error(moments) < 1e-5
    naive = Moments(count=reference.count, sum=reference.sum,
                    outer=(x.float().reshape(-1, 16).T @ x.float().reshape(-1, 16)).double())
    assert error(naive) > 1e-2  # uncentred float32 products: what centring avoids


def test_sums_do_not_depend_on_how_clips_are_batched():
    x = anisotropic(4 * 300, 12, seed=5).reshape(4, 300, 12)
    together, apart = Moments.zeros(12), Moments.zeros(12)
    together.update(x)
    for clip in x.split(1):
        apart.update(clip)
    assert_moments_close(together, apart, rtol=1e-14)


def test_mean_and_covariance_match_torch():
    x = anisotropic(500, 8, seed=2).double()
    moments = moments_of(x)
    torch.testing.assert_close(moments.mean(), x.mean(0))
    torch.testing.assert_close(moments.covariance(), torch.cov(x.T, correction=0))


def test_mask_counts_only_selected_rows():
    x = anisotropic(60, 5, seed=3).double().reshape(3, 20, 5)
    mask = torch.arange(20) < torch.tensor([20, 7, 1])[:, None]
    moments = Moments.zeros(5)
    moments.update(x, mask)
    assert_moments_close(moments, moments_of(x[mask]))


def test_update_rejects_wrong_shapes():
    moments = Moments.zeros(5)
    with pytest.raises(ValueError, match="width 5"):
        moments.update(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="mask shape"):
        moments.update(torch.zeros(2, 3, 5), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="no rows"):
        moments.mean()


@pytest.mark.parametrize("with_bias", [True, False])
def test_affine_equals_measured_output_moments(with_bias):
    generator = torch.Generator().manual_seed(4)
    x = anisotropic(800, 10, seed=4).double()
    weight = torch.randn(7, 10, generator=generator, dtype=torch.float64)
    bias = torch.randn(7, generator=generator, dtype=torch.float64) if with_bias else None
    y = torch.nn.functional.linear(x, weight, bias)
    assert_moments_close(moments_of(x).affine(weight, bias), moments_of(y), rtol=1e-11)


# --- collect_statistics on a tiny Whisper ---------------------------------------------


def test_every_target_has_a_source():
    assert set(statistics_module.SOURCES) == set(LOW_RANK_TARGETS)
    assert ATTENTION + MLP == tuple(LOW_RANK_TARGETS)


@pytest.mark.parametrize("exclude_padding", [False, True])
def test_hooked_statistics_equal_manual_capture(exclude_padding):
    model = tiny_whisper_model(seed=0)
    batches = calibration_batches([[1500, 700], [300]])
    statistics = collect_statistics(model, batches, exclude_padding=exclude_padding, progress=False)

    assert statistics.calibration_clips == 3
    assert statistics.calibration_frames == 1500 + 700 + 300
    expected_rows = 2500 if exclude_padding else 3 * ENCODER_FRAMES
    assert all(m.count == expected_rows for m in statistics.moments.values())

    derived = statistics.derive_output_moments(model)
    manual = manual_output_moments(model, batches, exclude_padding)
    assert derived.keys() == manual.keys() == {(i, n) for i in range(2) for n in LOW_RANK_TARGETS}
    for key, expected in manual.items():
        measured = statistics_module.SOURCES[key[1]][0] == "output"
        # float32 activations: products centred and summed in float32 per clip (Moments._add_rows), so
        # measured moments agree with the float64 reference to float32 precision; derived ones map
        # float64 input moments, against a reference that sums float32 outputs.
        assert_moments_close(derived[key], expected, rtol=1e-6 if measured else 1e-5)


def test_hooks_removed_after_run_and_after_error():
    model = tiny_whisper_model(seed=0)
    before = hook_counts(model)
    collect_statistics(model, calibration_batches([[1500]]), progress=False)
    assert hook_counts(model) == before

    def fail(module, args, output):
        raise RuntimeError("boom mid-forward")

    failing = model.model.encoder.layers[1].register_forward_hook(fail)
    with pytest.raises(RuntimeError, match="boom mid-forward"):
        collect_statistics(model, calibration_batches([[1500]]), progress=False)
    failing.remove()
    assert hook_counts(model) == before
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_decoder_is_never_called():
    model = tiny_whisper_model(seed=0)

    def forbid(module, args, kwargs):
        raise AssertionError("the decoder ran during calibration")

    model.model.decoder.register_forward_pre_hook(forbid, with_kwargs=True)
    statistics = collect_statistics(model, calibration_batches([[800]]), progress=False)
    assert statistics.calibration_clips == 1


def test_frame_counts_are_validated():
    model = tiny_whisper_model(seed=0)
    features = torch.zeros(2, 80, 2 * ENCODER_FRAMES)
    with pytest.raises(ValueError, match="between 1 and 1500"):
        collect_statistics(model, [(features, torch.tensor([1501, 3]))], progress=False)
    with pytest.raises(ValueError, match="shape \\(2,\\)"):
        collect_statistics(model, [(features, torch.tensor([3]))], progress=False)


# --- save, load, merge, compatibility -------------------------------------------------


def assert_statistics_equal(actual: CalibrationStatistics, expected: CalibrationStatistics, rtol: float = 0.0):
    assert actual.signature == expected.signature
    assert actual.exclude_padding == expected.exclude_padding
    assert actual.calibration_clips == expected.calibration_clips
    assert actual.calibration_frames == expected.calibration_frames
    assert actual.moments.keys() == expected.moments.keys()
    for key, moments in expected.moments.items():
        if rtol == 0.0:
            assert actual.moments[key].count == moments.count
            assert torch.equal(actual.moments[key].sum, moments.sum)
            assert torch.equal(actual.moments[key].outer, moments.outer)
        else:
            assert_moments_close(actual.moments[key], moments, rtol=rtol)


def test_save_load_round_trip_is_exact(tmp_path):
    model = tiny_whisper_model(seed=0)
    statistics = collect_statistics(
        model, calibration_batches([[1500, 20]]), exclude_padding=True, progress=False, model_name="tiny-random"
    )
    path = tmp_path / "statistics.safetensors"
    statistics.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["statistics.safetensors"]  # one file
    assert_statistics_equal(CalibrationStatistics.load(path), statistics)


def test_merge_of_saved_shards_equals_union(tmp_path):
    model = tiny_whisper_model(seed=0)
    first, second = calibration_batches([[1500, 900]], seed=1), calibration_batches([[400]], seed=2)
    collect_statistics(model, first, progress=False).save(tmp_path / "a.safetensors")
    collect_statistics(model, second, progress=False).save(tmp_path / "b.safetensors")
    merged = CalibrationStatistics.load(tmp_path / "a.safetensors").merge(
        CalibrationStatistics.load(tmp_path / "b.safetensors")
    )
    union = collect_statistics(model, first + second, progress=False)
    assert_statistics_equal(merged, union, rtol=1e-12)


def signature(**overrides) -> ModelSignature:
    fields = dict(d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=256, num_mel_bins=80)
    return ModelSignature(**(fields | overrides))


def test_merge_refuses_other_models_and_padding_modes():
    base = CalibrationStatistics(signature(), exclude_padding=False)
    with pytest.raises(ValueError, match=r"d_model=64, 2 layers.*vs d_model=32, 2 layers"):
        base.merge(CalibrationStatistics(signature(d_model=32), exclude_padding=False))
    with pytest.raises(ValueError, match=r"\[aaaa\] vs d_model=64.*\[bbbb\]"):  # same shape, other weights
        CalibrationStatistics(signature(fingerprint="aaaa"), exclude_padding=False).merge(
            CalibrationStatistics(signature(fingerprint="bbbb"), exclude_padding=False))
    # the name is free-form (a hub id here, a folder there): same weights merge
    named = CalibrationStatistics(signature(model_name="openai/whisper-tiny"), exclude_padding=False)
    assert base.merge(named).calibration_clips == 0
    with pytest.raises(ValueError, match="exclude_padding=False and exclude_padding=True"):
        base.merge(CalibrationStatistics(signature(), exclude_padding=True))


def test_check_compatible_names_both_shapes():
    statistics = CalibrationStatistics(signature(model_name="tiny-random"), exclude_padding=False)
    statistics.check_compatible(tiny_whisper_model(seed=1))  # names may differ, shapes agree
    with pytest.raises(ValueError) as error:
        statistics.check_compatible(tiny_whisper_model(seed=0, d_model=32, encoder_layers=3))
    message = str(error.value)
    assert "statistics were collected on a model with d_model=64, 2 layers" in message
    assert "this model has d_model=32, 3 layers" in message


def test_output_moments_of_input_side_target_needs_weights():
    model = tiny_whisper_model(seed=0)
    statistics = collect_statistics(model, calibration_batches([[100]]), progress=False)
    with pytest.raises(ValueError, match="k_proj statistics are kept on its input"):
        statistics.output_moments(0, "k_proj")
    assert statistics.output_moments(0, "fc2").dim == 64
    with pytest.raises(KeyError, match="unknown target"):
        statistics.output_moments(0, "conv1")


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"x": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a lite-whisper statistics file"):
        CalibrationStatistics.load(path)
    with pytest.raises(FileNotFoundError, match="not found"):
        CalibrationStatistics.load(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("dim", [512, 1030])  # 2 and 4 column blocks (the last ones uneven)
def test_wide_activations_get_the_full_symmetric_matrix_from_triangular_blocks(dim):
    generator = torch.Generator().manual_seed(dim)
    x = torch.randn(2, 300, dim, generator=generator) * torch.logspace(0, -1, dim) + 1.0
    moments = Moments.zeros(dim)
    moments.update(x)
    moments.update(x[:1])
    assert moments.lower_stale == (dim >= 512)  # only the upper blocks so far
    reference = moments_of(torch.cat([x, x[:1]]))
    moments.symmetrize()  # mirrored once, when read
    assert float((moments.outer - moments.outer.T).abs().max() / moments.outer.abs().max()) < 1e-12
    assert_moments_close(moments, reference, rtol=1e-6)  # the blocks below the diagonal are there too


# --- batched products, their precision, and what the statistics record ----------------------------


def test_a_float_mask_with_host_row_counts_gives_the_masked_rows_moments():
    """Padding masked by multiplication (0/1 weights) and rows counted by the caller: the moments of exactly the
    selected rows, each clip centred on its own mean (float32 activations, float32 products)."""
    x = anisotropic(3 * 200, 48, seed=11).reshape(3, 200, 48)
    lengths = [200, 57, 1]
    mask = (torch.arange(200) < torch.tensor(lengths)[:, None]).float()
    moments = Moments.zeros(48)
    moments.update(x, mask, rows=sum(lengths))
    reference = moments_of(torch.cat([clip[:n] for clip, n in zip(x, lengths)]).double())
    assert_moments_close(moments, reference, rtol=2e-6)


def test_round_to_tf32_keeps_ten_mantissa_bits_rounding_to_nearest_even():
    from lite_whisper.calibration.moments import round_to_tf32

    ulp = 2.0 ** -10  # TF32's spacing at 1.0
    values = torch.tensor([1.0, 1.0 + ulp / 4, 1.0 + ulp / 2, 1.0 + 3 * ulp / 2, 1.0 + 0.75 * ulp, -3.0 - ulp / 4])
    expected = torch.tensor([1.0, 1.0, 1.0, 1.0 + 2 * ulp, 1.0 + ulp, -3.0])  # ties go to the even neighbour
    assert torch.equal(round_to_tf32(values), expected)
    x = torch.randn(1000)
    assert float(((round_to_tf32(x) - x).abs() / x.abs()).max()) <= 2.0 ** -11


@pytest.mark.parametrize("products, bound", [("tf32", 2e-3), ("bfloat16", 1.5e-2)])
def test_reduced_precision_products_stay_close_to_float32(products, bound):
    """TF32 and bfloat16 products (emulated on the CPU) with float64 sums: close to float32, and really rounded."""
    x = anisotropic(4 * 300, 40, seed=12).reshape(4, 300, 40)
    exact, reduced = Moments.zeros(40), Moments.zeros(40)
    exact.update(x)
    reduced.update(x, products=products)
    error = float((reduced.covariance() - exact.covariance()).norm() / exact.covariance().norm())
    assert 1e-6 < error < bound, error
    with pytest.raises(ValueError, match="unknown product precision"):
        exact.update(x, products="float8")


def test_statistics_record_how_they_were_computed(tmp_path):
    model = tiny_whisper_model(seed=0)
    batches = calibration_batches([[1500, 300]])
    statistics = collect_statistics(model, batches, exclude_padding=True, progress=False, products="tf32")
    assert statistics.precision == {"encoder": "float32", "tf32": False, "products": "tf32", "sums": "float64"}
    assert not any(m.lower_stale for m in statistics.moments.values())  # mirrored once at the end
    path = tmp_path / "stats.safetensors"
    statistics.save(path)
    assert CalibrationStatistics.load(path).precision == statistics.precision
    assert torch.backends.cudnn.allow_tf32  # the default, restored after the float32 pass


def test_cli_calibrate_records_the_product_precision(tmp_path, calibration_folder):
    from conftest import tiny_processor

    from lite_whisper.cli import main
    from lite_whisper.cli.common import default_dtype
    from lite_whisper.models.loading import save_model

    dense = save_model(tiny_whisper_model(vocab_size=51864), tiny_processor(), tmp_path / "dense")
    output = tmp_path / "stats.safetensors"
    assert main(["calibrate", str(dense), "--calibration", str(calibration_folder), "--products", "bfloat16",
                 "--augment", "0", "--no-progress", "-o", str(output)]) == 0
    assert CalibrationStatistics.load(output).precision == {"encoder": "float32", "tf32": False,
                                                          "products": "bfloat16", "sums": "float64"}
    assert default_dtype("cuda") == default_dtype("cuda:1") == "float16"  # a GPU's default compute dtype
    assert default_dtype("cpu") == default_dtype(None) == "float32"
