"""The accuracy/speed frontier users choose from: dense and compressed Whispers of several sizes,
each as the int8 export users deploy, WER on clean speech and on harder copies against the speed the
same engine reaches end to end.

`scripts/frontier.py` builds the points (compress, export, eval, timing); this module names them,
summarises their results and draws the picture, so that the logic is tested without the hours of work.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from lite_whisper.experiments.plots import _pyplot

CLEAN = "clean"  # the clean evaluation set's name; every other dataset is a variant
_POINT = re.compile(r"^(?P<model>[^@]+?)(?:@(?P<fraction>[0-9.]+)(?:/d(?P<steps>[0-9]+))?)?$")


@dataclass(frozen=True)
class FrontierPoint:
    """One model on the frontier: `model` dense, or compressed to `fraction` of its encoder parameters by
    the default recipe (`distill_steps` None) or with that many distillation steps instead."""

    model: str
    fraction: float | None = None
    distill_steps: int | None = None

    @classmethod
    def parse(cls, text: str) -> "FrontierPoint":
        """MODEL (dense), MODEL@FRACTION (`compress --target-params FRACTION`), MODEL@FRACTION/dSTEPS
        (`--distill-steps STEPS`: /d0 without training, /d128 a longer recovery)."""
        match = _POINT.match(text.strip())
        if match is None:
            raise ValueError(f"{text!r}: a point is MODEL, MODEL@FRACTION or MODEL@FRACTION/dSTEPS "
                             "(e.g. base, base@0.75, base@0.6/d128)")
        fraction = float(match["fraction"]) if match["fraction"] else None
        steps = int(match["steps"]) if match["steps"] else None
        if fraction is not None and not 0.0 < fraction < 1.0:
            raise ValueError(f"{text!r}: the fraction of encoder parameters must lie between 0 and 1")
        return cls(match["model"], fraction, steps)

    @property
    def dense(self) -> bool:
        return self.fraction is None

    @property
    def model_label(self) -> str:
        """The dense model's name as a folder name (a hub id's slash replaced)."""
        return self.model.strip("/").replace("/", "_")

    @property
    def label(self) -> str:
        """A name that is also a folder name: base, base-p75, base-p60-d128."""
        model = self.model_label
        if self.dense:
            return model
        label = f"{model}-p{round(100 * self.fraction):d}"
        return label if self.distill_steps is None else f"{label}-d{self.distill_steps}"

    @property
    def recipe(self) -> str:
        """What the line in the picture calls it."""
        if self.dense or self.distill_steps is None:
            return "default"
        return "no training" if self.distill_steps == 0 else f"{self.distill_steps} distillation steps"

    def compress_arguments(self) -> list[str]:
        assert not self.dense
        arguments = ["--target-params", f"{self.fraction:g}"]
        return arguments if self.distill_steps is None else arguments + ["--distill-steps", str(self.distill_steps)]


def geometric_mean(values) -> float:
    values = list(values)
    return float(math.exp(sum(math.log(v) for v in values) / len(values)))


def summarise(point: FrontierPoint, wers: dict[str, float], rtfx: dict[str, float]) -> dict:
    """One row of frontier.json: WER per dataset, the variants' geometric mean, end-to-end speed."""
    variants = [wer for name, wer in wers.items() if name != CLEAN]
    return {"label": point.label, "model": point.model, "fraction": point.fraction, "recipe": point.recipe,
            "wer": wers, "clean_wer": wers.get(CLEAN),
            "variants_geo_mean_wer": geometric_mean(variants) if variants and min(variants) > 0 else None,
            "rtfx": rtfx}


def with_ratios(rows: list[dict]) -> list[dict]:
    """Each compressed row gets its WER ratios to the same model's dense row (when that row is there)."""
    dense = {row["model"]: row for row in rows if row["fraction"] is None}
    for row in rows:
        reference = dense.get(row["model"])
        if row["fraction"] is None or reference is None:
            continue
        ratios = {name: wer / reference["wer"][name] for name, wer in row["wer"].items()
                  if reference["wer"].get(name)}
        variants = [ratio for name, ratio in ratios.items() if name != CLEAN]
        row["ratios"] = ratios
        row["variants_geo_mean_ratio"] = geometric_mean(variants) if variants else None
        row["worst_variant_ratio"] = max(variants) if variants else None
    return rows


def table(rows: list[dict], speed_key: str) -> str:
    """A Markdown table: one row per point, WER per dataset, the ratios to dense, RTFx."""
    datasets = list(rows[0]["wer"]) if rows else []
    head = ["point", "recipe", *[f"{name} WER %" for name in datasets], "variants geo. mean WER %",
            "geo. mean ratio", "worst ratio", f"RTFx ({speed_key})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        ratio = row.get("ratios", {})
        cells = [row["label"], row["recipe"]]
        cells += [f"{row['wer'][name]:.2f}" + (f" ({ratio[name]:.2f}x)" if name in ratio else "") for name in datasets]
        cells.append(_number(row["variants_geo_mean_wer"]))
        cells.append(_number(row.get("variants_geo_mean_ratio"), "x"))
        cells.append(_number(row.get("worst_variant_ratio"), "x"))
        cells.append(_number(row["rtfx"].get(speed_key), "", 1))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value, unit: str = "", digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def plot_frontier(rows: list[dict], path: str | Path, speed_key: str, title: str = "") -> Path:
    """Two panels, clean WER and the variants' geometric-mean WER against end-to-end RTFx: one line per
    model and recipe from dense through smaller fractions, each point labelled with its fraction."""
    plt = _pyplot()
    panels = [("clean_wer", "clean speech")]
    if any(row["variants_geo_mean_wer"] is not None for row in rows):
        panels.append(("variants_geo_mean_wer", "harder copies (geometric mean over variants)"))
    figure, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.8), squeeze=False)
    models = list(dict.fromkeys(row["model"] for row in rows))
    colours = {model: f"C{index}" for index, model in enumerate(models)}
    recipes = list(dict.fromkeys(row["recipe"] for row in rows if row["fraction"] is not None))
    styles = {recipe: style for recipe, style in zip(recipes, ["-", "--", ":", "-."] * 4)}
    for axis, (key, name) in zip(axes[0], panels):
        for model in models:
            dense = [row for row in rows if row["model"] == model and row["fraction"] is None]
            for recipe in recipes:
                line = dense + sorted((row for row in rows if row["model"] == model and row["recipe"] == recipe
                                       and row["fraction"] is not None), key=lambda row: -row["fraction"])
                line = [row for row in line if row[key] is not None and row["rtfx"].get(speed_key)]
                if all(row["fraction"] is None for row in line):  # no compressed point of this recipe to draw
                    continue
                axis.plot([row["rtfx"][speed_key] for row in line], [row[key] for row in line], styles[recipe],
                          marker="o", color=colours[model], label=f"{model}, {recipe}")
            for row in dense:
                if row[key] is not None and row["rtfx"].get(speed_key):
                    axis.plot(row["rtfx"][speed_key], row[key], marker="*", markersize=14, color=colours[model],
                              linestyle="none", label=f"{model}, dense")
            for row in rows:
                if row["model"] == model and row[key] is not None and row["rtfx"].get(speed_key):
                    text = "dense" if row["fraction"] is None else f"{round(100 * row['fraction'])}%"
                    axis.annotate(text, (row["rtfx"][speed_key], row[key]), textcoords="offset points",
                                  xytext=(4, 4), fontsize=7, color=colours[model])
        axis.set_xlabel(f"end-to-end speed of the export (RTFx, {speed_key}; right is faster)")
        axis.set_ylabel("WER % (lower is better)")
        axis.set_title(name, fontsize=10)
        axis.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    axes[0][0].legend(unique.values(), unique.keys(), fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
