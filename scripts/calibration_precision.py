"""How much calibration's product precision moves the statistics and the ranks they choose.

Calibrates one model on the same clips four ways and compares each with a float64 reference
(the encoder and every product in float64): float32 products (the default), TF32 and bfloat16
products (emulated on the CPU by rounding their inputs, as tensor cores read them), and
optionally a statistics file written by another version (`--compare FILE`, e.g. one written
before the batched products). For every target linear: the relative error of the output
covariance, and the rank the paper's rule picks at each threshold. JSON + a table.

    python scripts/calibration_precision.py tiny.en --limit 32 --json runs/precision-tiny.en.json
    python scripts/calibration_precision.py base --limit 32 --compare old-base.stats
"""

from __future__ import annotations

import argparse
import json
import os
import statistics as stats
import sys
import time
from pathlib import Path

import torch

from lite_whisper.calibration.calibrate import calibrate
from lite_whisper.calibration.statistics import CalibrationStatistics
from lite_whisper.compression.decomposition import rank_for_threshold
from lite_whisper.data.datasets import load_dataset
from lite_whisper.models.loading import load_pytorch_model

THRESHOLDS = (0.9, 0.95, 0.99, 0.999)


def output_covariances(statistics: CalibrationStatistics, model) -> dict:
    return {key: moments.covariance() for key, moments in statistics.iter_output_moments(model)}


def ranks_of(covariances: dict) -> dict:
    ranks = {}
    for key, covariance in covariances.items():
        eigenvalues = torch.linalg.eigvalsh(covariance).flip(0).clamp_min(0.0)
        ranks[key] = [rank_for_threshold(eigenvalues, threshold) for threshold in THRESHOLDS]
    return ranks


def compare(name: str, covariances: dict, reference: dict, reference_ranks: dict, seconds: float | None) -> dict:
    errors = [float((covariances[key] - reference[key]).norm() / reference[key].norm()) for key in reference]
    ranks = ranks_of(covariances)
    differing = [(f"{key[0]}.{key[1]}", THRESHOLDS[index], reference_ranks[key][index], rank)
                 for key in reference for index, rank in enumerate(ranks[key]) if rank != reference_ranks[key][index]]
    return {"name": name, "seconds": seconds, "median_relative_error": stats.median(errors),
            "max_relative_error": max(errors), "rank_choices": len(reference) * len(THRESHOLDS),
            "ranks_differing": len(differing), "differences": differing[:20]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="tiny.en, base, or a folder")
    parser.add_argument("--calibration", help="dataset spec (default: the calibration split under $LITE_WHISPER_SPEECH)")
    parser.add_argument("--limit", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--compare", type=Path, help="a statistics file of the same model and clips to compare too")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    speech = Path(os.environ.get("LITE_WHISPER_SPEECH", Path(__file__).resolve().parents[2] / "shared" / "speech"))
    dataset = load_dataset(args.calibration or str(speech / "splits" / "calibration.txt"), limit=args.limit)

    model, processor = load_pytorch_model(args.model, dtype="float32")

    def run(precision_model, products: str) -> tuple[CalibrationStatistics, float]:
        start = time.perf_counter()
        statistics = calibrate(precision_model, processor, dataset, batch_size=args.batch_size, progress=False,
                               products=products, model_name=args.model)
        return statistics, time.perf_counter() - start

    reference_stats, reference_seconds = run(model.double(), "float32")  # float64 activations: float64 products
    model = model.float()
    reference = output_covariances(reference_stats, model)
    reference_ranks = ranks_of(reference)
    rows = [{"name": "float64 (reference)", "seconds": reference_seconds}]
    for products in ("float32", "tf32", "bfloat16"):
        statistics, seconds = run(model, products)
        rows.append(compare(f"{products} products", output_covariances(statistics, model), reference,
                            reference_ranks, seconds))
    if args.compare:
        other = CalibrationStatistics.load(args.compare)
        rows.append(compare(f"file {args.compare.name}", output_covariances(other, model), reference,
                            reference_ranks, None))
    result = {"model": args.model, "clips": reference_stats.calibration_clips, "thresholds": THRESHOLDS,
              "torch": torch.__version__, "rows": rows}
    print(f"{args.model}, {reference_stats.calibration_clips} clips; ranks at thresholds {THRESHOLDS}")
    print(f"{'statistics':28} {'seconds':>8} {'median err':>11} {'max err':>9} {'ranks differing':>16}")
    for row in rows:
        if "rank_choices" not in row:
            print(f"{row['name']:28} {row['seconds']:8.1f}")
            continue
        seconds = f"{row['seconds']:8.1f}" if row["seconds"] is not None else f"{'-':>8}"
        print(f"{row['name']:28} {seconds} {row['median_relative_error']:11.2e} {row['max_relative_error']:9.2e} "
              f"{row['ranks_differing']:>7} of {row['rank_choices']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
