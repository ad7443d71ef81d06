#!/usr/bin/env python3
"""Print a sweep's pareto.json as the Markdown table docs/RESULTS.md shows, with the WER of the
dev split's LibriSpeech clips and of its `extra/` clips (other corpora, rates, speakers) apart.

usage: python scripts/sweep_table.py DIR
"""

import json
import sys
from pathlib import Path

from lite_whisper.experiments.sweep import slug


def subset_wer(eval_file: Path) -> dict[str, float]:
    """Corpus WER per top-level folder of the clip ids (librispeech/..., extra/...)."""
    errors: dict[str, float] = {}
    words: dict[str, int] = {}
    for row in json.loads(eval_file.read_text())["utterances"]:
        group = row["id"].split("/")[0]
        if row["wer"] is not None:
            errors[group] = errors.get(group, 0.0) + row["wer"] * row["words"] / 100
            words[group] = words.get(group, 0) + row["words"]
    return {group: 100 * errors[group] / words[group] for group in words if words[group]}


def main(folder: str) -> None:
    folder = Path(folder)
    sweep = json.loads((folder / "pareto.json").read_text())
    points = sweep["points"]
    dense = next(p for p in points if p["label"] == "dense")
    print(f"{sweep['model']}: calibrated on {sweep['calibration_clips']} clips, evaluated on {sweep['data']}\n")
    print("| setting | encoder params | vs dense | encoder GFLOPs (30 s) | vs dense "
          "| corpus WER % | LibriSpeech WER % | extra/ WER % | mean utt. WER % |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p in points:
        groups = subset_wer(folder / slug(p["label"]) / "eval.json")
        print(f"| {p['label']} | {p['encoder_params'] / 1e6:.2f}M | {p['encoder_params'] / dense['encoder_params']:.1%} "
              f"| {p['encoder_flops'] / 1e9:.1f} | {p['encoder_flops'] / dense['encoder_flops']:.1%} "
              f"| {p['wer']:.2f} | {groups.get('librispeech', float('nan')):.2f} | {groups.get('extra', float('nan')):.2f} "
              f"| {p['mean_utterance_wer']:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1])
