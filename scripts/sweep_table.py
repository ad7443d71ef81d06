#!/usr/bin/env python3
"""Print a sweep's pareto.json as the Markdown table docs/RESULTS.md shows.

usage: python scripts/sweep_table.py DIR/pareto.json
"""

import json
import sys


def main(path: str) -> None:
    sweep = json.loads(open(path).read())
    points = sweep["points"]
    dense = next(p for p in points if p["label"] == "dense")
    print(f"{sweep['model']}: calibrated on {sweep['calibration_clips']} clips, evaluated on {sweep['data']}\n")
    print("| threshold (attn:mlp) | encoder params | vs dense | encoder GFLOPs (30 s) | vs dense "
          "| corpus WER % | mean utt. WER % | encoder speedup (b1) |")
    print("|---|---|---|---|---|---|---|---|")
    for p in points:
        speedup = f"{p['speedup']:.2f}x" if p.get("speedup") else ("1.00x" if p is dense and any(q.get("speedup") for q in points) else "-")
        print(f"| {p['label']} | {p['encoder_params'] / 1e6:.2f}M | {p['encoder_params'] / dense['encoder_params']:.1%} "
              f"| {p['encoder_flops'] / 1e9:.1f} | {p['encoder_flops'] / dense['encoder_flops']:.1%} "
              f"| {p['wer']:.2f} | {p['mean_utterance_wer']:.2f} | {speedup} |")


if __name__ == "__main__":
    main(sys.argv[1])
