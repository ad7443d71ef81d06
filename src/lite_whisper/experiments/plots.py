"""Pictures of a sweep: the WER/cost Pareto frontier and a per-layer rank heat-map."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'lite-whisper[plot]'") from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def point_method(label: str) -> str:
    """The method a sweep label was made by: "allocate-params0.75" -> allocate; a bare threshold -> paper."""
    if label == "dense":
        return "dense"
    head = label.split("-", 1)[0]
    return head if "-" in label and not head[:1].isdigit() else "paper"


METHOD_COLOURS = {"paper": "tab:red", "robust": "tab:orange", "allocate": "tab:blue", "distill": "tab:green"}


def plot_pareto(points, path: str | Path, title: str = "") -> Path:
    """Two panels: WER vs encoder parameters, WER vs measured encoder latency; one curve per method."""
    plt = _pyplot()
    panels = [("encoder_params", "pareto_params", "encoder parameters (millions)", 1e-6)]
    if any(p.latency_ms is not None for p in points):
        panels.append(("latency_ms", "pareto_latency", "encoder latency, 30 s input, batch 1 (ms)", 1.0))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    methods = sorted({point_method(p.label) for p in points} - {"dense"}, key=lambda m: (m not in METHOD_COLOURS, m))
    for axis, (cost, flag, xlabel, scale) in zip(axes[0], panels):
        measured = [p for p in points if getattr(p, cost) is not None]
        if len(methods) == 1:  # with several methods their curves say more than one frontier line
            front = sorted((p for p in measured if getattr(p, flag)), key=lambda p: getattr(p, cost))
            axis.plot([getattr(p, cost) * scale for p in front], [p.wer for p in front], "--", color="black",
                      alpha=0.35, label="Pareto frontier")
        for index, method in enumerate(methods):
            colour = METHOD_COLOURS.get(method, f"C{index + 4}")
            curve = sorted((p for p in measured if point_method(p.label) == method), key=lambda p: getattr(p, cost))
            axis.plot([getattr(p, cost) * scale for p in curve], [p.wer for p in curve], "o-", color=colour,
                      markersize=6, alpha=0.85, label=method, zorder=3)
        xs = [getattr(p, cost) * scale for p in measured]
        span = (max(xs) - min(xs)) or 1.0
        previous_x, below = None, False
        for x, p in sorted(zip(xs, measured), key=lambda pair: pair[0]):
            if p.label == "dense":
                axis.scatter(x, p.wer, s=120, marker="*", color="black", zorder=4)
            if len(methods) > 1 and ("-params" in p.label or "-flops" in p.label):
                continue  # budget points: the legend names the method, the axis the size
            # neighbours closer than 10% of the axis take turns above and below their point
            below = previous_x is not None and x - previous_x < 0.10 * span and not below
            axis.annotate(p.label, (x, p.wer), textcoords="offset points", xytext=(5, -12 if below else 5),
                          fontsize=7)
            previous_x = x
        wers = [p.wer for p in measured if p.wer > 0]
        log_scale = bool(wers) and max(wers) / min(wers) > 5  # broken settings would flatten the rest
        if log_scale:
            axis.set_yscale("log")
        axis.set_xlabel(xlabel)
        axis.set_ylabel("WER (%, corpus, lower is better" + (", log scale)" if log_scale else ")"))
        axis.grid(alpha=0.3)
        axis.scatter([], [], marker="*", color="black", s=120, label="dense model")
        axis.legend(loc="upper right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_ranks(report, path: str | Path, title: str = "") -> Path:
    """Heat-map of the kept rank as a share of full rank, per encoder layer and module."""

    plt = _pyplot()
    names = list(report.layers[0])
    share = np.full((len(report.layers), len(names)), np.nan)
    labels = np.empty(share.shape, dtype=object)
    for row, layer in enumerate(report.layers):
        for col, name in enumerate(names):
            entry = layer[name]
            full = min(entry.d_in, entry.d_out)
            share[row, col] = 1.0 if entry.rank is None else entry.rank / full
            labels[row, col] = "dense" if entry.rank is None else str(entry.rank)
    fig, axis = plt.subplots(figsize=(1.3 * len(names) + 2, 0.45 * len(report.layers) + 1.8))
    image = axis.imshow(share, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for (row, col), text in np.ndenumerate(labels):
        axis.text(col, row, text, ha="center", va="center", fontsize=8,
                  color="black" if share[row, col] > 0.6 else "white")
    axis.set_xticks(range(len(names)), names)
    axis.set_yticks(range(len(report.layers)), [str(i) for i in range(len(report.layers))])
    axis.set_xlabel("module")
    axis.set_ylabel("encoder layer")
    fig.colorbar(image, ax=axis, label="kept rank / full rank (dense = 1)")
    if title:
        axis.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
