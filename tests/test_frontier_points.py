"""The frontier's logic: points named on the command line, their rows, ratios, table and picture."""

import math

import pytest

from lite_whisper.experiments.frontier import FrontierPoint, plot_frontier, summarise, table, with_ratios


def test_points_parse_to_the_commands_that_build_them():
    dense = FrontierPoint.parse("base")
    assert dense.dense and dense.label == "base" and dense.recipe == "default"
    default = FrontierPoint.parse("base@0.75")
    assert default.label == "base-p75" and default.compress_arguments() == ["--target-params", "0.75"]
    recovered = FrontierPoint.parse("openai/whisper-small@0.6/d128")
    assert recovered.label == "openai_whisper-small-p60-d128" and recovered.model_label == "openai_whisper-small"
    assert recovered.compress_arguments() == ["--target-params", "0.6", "--distill-steps", "128"]
    assert recovered.recipe == "128 distillation steps"
    assert FrontierPoint.parse("tiny.en@0.6/d0").recipe == "no training"


@pytest.mark.parametrize("text", ["base@1.5", "base@0", "base@0.6/x3", "", "base@0.6@0.5", "base@"])
def test_a_malformed_point_is_refused_with_the_accepted_forms(text):
    with pytest.raises(ValueError, match="MODEL@FRACTION|between 0 and 1"):
        FrontierPoint.parse(text)


def _rows():
    wers = {
        "tiny.en": {"clean": 6.0, "babble": 16.0, "white": 25.0},
        "tiny.en@0.75": {"clean": 6.5, "babble": 20.0, "white": 27.5},
        "base": {"clean": 5.7, "babble": 12.0, "white": 18.0},
        "base@0.75": {"clean": 5.8, "babble": 13.2, "white": 19.8},
        "base@0.6": {"clean": 6.3, "babble": 15.0, "white": 22.5},
    }
    speeds = {"tiny.en": 40.0, "tiny.en@0.75": 45.0, "base": 20.0, "base@0.75": 24.0, "base@0.6": 27.0}
    return with_ratios([summarise(FrontierPoint.parse(name), wer, {"b8": speeds[name], "b1": speeds[name] / 2})
                        for name, wer in wers.items()])


def test_rows_carry_the_variants_geometric_mean_and_ratios_to_their_own_dense_model():
    rows = {row["label"]: row for row in _rows()}
    assert rows["base"]["variants_geo_mean_wer"] == pytest.approx(math.sqrt(12.0 * 18.0))
    assert "ratios" not in rows["base"]
    base60 = rows["base-p60"]
    assert base60["ratios"]["clean"] == pytest.approx(6.3 / 5.7)
    assert base60["worst_variant_ratio"] == pytest.approx(22.5 / 18.0)
    assert base60["variants_geo_mean_ratio"] == pytest.approx(math.sqrt(15.0 / 12.0 * 22.5 / 18.0))
    assert rows["tiny.en-p75"]["ratios"]["babble"] == pytest.approx(20.0 / 16.0)  # tiny.en's dense, not base's


def test_the_table_has_a_row_per_point_with_its_speed():
    text = table(_rows(), "b8")
    lines = text.splitlines()
    assert len(lines) == 2 + 5
    assert "| base-p60 | default | 6.30 (1.11x) |" in text
    assert lines[-1].endswith("| 27.0 |")


def test_the_picture_has_a_panel_for_the_variants_only_when_there_are_variants(tmp_path):
    import matplotlib.image

    both = matplotlib.image.imread(plot_frontier(_rows(), tmp_path / "frontier.png", "b8", title="test"))
    assert both.shape[1] > 1.8 * both.shape[0]  # two panels side by side
    clean_only = [summarise(FrontierPoint.parse("base"), {"clean": 5.7}, {"b8": 20.0}),
                  summarise(FrontierPoint.parse("base@0.75"), {"clean": 5.8}, {"b8": 24.0})]
    one = matplotlib.image.imread(plot_frontier(with_ratios(clean_only), tmp_path / "clean.png", "b8"))
    assert one.shape[1] < 1.5 * one.shape[0]
