"""Which calibration and compression settings keep a compressed model's accuracy on degraded speech.

Compresses one dense model several ways (calibration statistics from clean audio or with degraded
copies, damage probes and distillation on clean or degraded audio, calibration-set size, budget),
evaluates every model and the dense one on the clean dev split and on every folder of a
`lite-whisper variants` root, and writes OUT/study.json and a table: WER per dataset, the ratio to
dense, looping utterances the dense model does not have, the worst ratio. Everything is cached
under OUT (statistics, model folders, one JSON per evaluation), so re-running with more methods
only does the new work.

    python scripts/robustness_study.py tiny.en --variants ~/speech-variants/dev -o runs/study-tiny.en \
        --method allocate=target:0.75 --method augment=target:0.75,augment:1 \
        --method augment-probes=target:0.75,augment:1,probes:augmented

A method is NAME=key:value,...; keys: target (encoder-parameter fraction), augment (degraded
copies per calibration clip in the statistics), probes (clean | augmented: the clips whose damage
prices the ranks), probe_clips (default 4), distill (steps), distill_data (clean | augmented),
distill_lr (learning rate, default 1e-4), limit (calibration clips), seed (the augmentation's).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from lite_whisper.compression.config import CompressionConfig
from lite_whisper.compression.distill import DistillConfig
from lite_whisper.compression.pipeline import compress_and_save, load_or_calibrate
from lite_whisper.api import load_engine
from lite_whisper.data.augment import Augmentation
from lite_whisper.data.datasets import load_dataset
from lite_whisper.data.variants import is_variants_root, variant_folders
from lite_whisper.deploy.export import export
from lite_whisper.evaluation.evaluate import evaluate
from lite_whisper.evaluation.loops import is_cut_short
from lite_whisper.evaluation.wer import normalize, word_errors
from lite_whisper.models.loading import load_pytorch_model
from lite_whisper.transcription.types import WHISPER_TEMPERATURES, DecodingOptions

DEFAULTS = {"target": 0.75, "augment": 0, "probes": "clean", "probe_clips": 4, "distill": 0,
            "distill_data": "clean", "distill_lr": 1e-4, "limit": None, "seed": 0}
WORDS = ("probes", "distill_data")


def parse_method(text: str) -> tuple[str, dict]:
    name, _, spec = text.partition("=")
    settings = dict(DEFAULTS)
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition(":")
        if key not in DEFAULTS:
            raise SystemExit(f"unknown method key {key!r} in {text!r}; keys: {', '.join(DEFAULTS)}")
        settings[key] = value if key in WORDS else (int(value) if key in (
            "augment", "probe_clips", "distill", "limit", "seed") else float(value))
    return name, settings


def stats_key(settings: dict) -> str:
    return f"aug{settings['augment']}-seed{settings['seed']}-limit{settings['limit']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--calibration", default="../shared/speech/splits/calibration.txt")
    parser.add_argument("--data", default="../shared/speech/splits/dev.txt", help="the clean evaluation set")
    parser.add_argument("--variants", type=Path, help="a `lite-whisper variants` root")
    parser.add_argument("--only", help="comma-separated variant names to evaluate (default: all)")
    parser.add_argument("--method", action="append", default=[], help="NAME=key:value,... (see above)")
    parser.add_argument("--eval-limit", type=int)
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--language", default="en")
    parser.add_argument("--build-only", action="store_true", help="compress the methods' models, evaluate nothing")
    parser.add_argument("--fallback", action="store_true",
                        help="decode with Whisper's temperature fallback (what users get) instead of greedy only "
                        "(the comparable figure); results go to OUT/eval-fallback")
    parser.add_argument("--early-end-recovery", action="store_true",
                        help="decode cut-short windows again (transcription.early_end) as eval does by default; off "
                        "here, so that the ratios measure the compression alone and match evaluations cached before "
                        "the recovery existed (results go to OUT/eval-recovery)")
    args = parser.parse_args()

    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    (out / "stats").mkdir(exist_ok=True)
    (out / "models").mkdir(exist_ok=True)
    torch.manual_seed(0)

    datasets = [("clean", args.data)]
    if args.variants is not None:
        if not is_variants_root(args.variants):
            raise SystemExit(f"{args.variants}: not a variants folder")
        only = set(args.only.split(",")) if args.only else None
        datasets += [(name, str(folder)) for name, folder in variant_folders(args.variants)
                     if only is None or name in only]
    options = DecodingOptions(language=args.language, max_new_tokens=args.max_new_tokens,
                              temperatures=WHISPER_TEMPERATURES if args.fallback else (0.0,),
                              recover_early_end=args.early_end_recovery)
    suffix = "-fallback" * args.fallback + "-recovery" * args.early_end_recovery
    results_folder = out / f"eval{suffix}"
    model, processor = load_pytorch_model(args.model, dtype="float32")
    methods = [parse_method(text) for text in args.method]
    known = json.loads((out / "methods.json").read_text()) if (out / "methods.json").exists() else {}
    known = {name: {**DEFAULTS, **settings} for name, settings in known.items()}  # keys added since: defaults
    for name, settings in methods:  # a name is one model folder: the same name with other settings is refused
        if known.get(name, settings) != settings:
            raise SystemExit(f"method {name!r} was run with other settings ({known[name]}); give it another name")
        known[name] = settings
    (out / "methods.json").write_text(json.dumps(known, indent=2))

    def evaluated(name: str, pair) -> dict:
        exported = out / "exports" / name
        if not (exported / "lite_whisper_export.json").exists():
            export(*pair, exported, source=name, decoder_quantization="float32", threads=2, overwrite=True, log=print)
        engine = load_engine(exported, encoder="float32")
        results = {}
        for label, spec in datasets:
            path = results_folder / name / f"{label}.json"
            if not path.exists():
                result = evaluate(engine, spec, options=options, limit=args.eval_limit, label=f"{name} {label}")
                path.parent.mkdir(parents=True, exist_ok=True)
                result.save(path)
            results[label] = json.loads(path.read_text())
        return results

    summary = {"model": args.model, "datasets": [label for label, _ in datasets], "methods": {}}
    if not args.build_only:
        dense = evaluated("dense", (model, processor))
        summary["dense"] = {label: _brief(result) for label, result in dense.items()}
    for name, settings in methods:
        folder = out / "models" / name
        if not (folder / "config.json").exists():
            calibration = load_dataset(args.calibration, limit=settings["limit"])
            augmented = calibration.augmented(Augmentation(copies=settings["augment"], seed=settings["seed"])) \
                if settings["augment"] else calibration
            stats_file = out / "stats" / f"{stats_key(settings)}.stats"
            loaded = load_or_calibrate(model, processor, augmented, stats_files=[stats_file],
                                       model_name=args.model, log=print)
            probe_source = augmented if settings["probes"] == "augmented" else calibration
            config = CompressionConfig.parse("1", target_params=settings["target"])
            distillation = DistillConfig(steps=settings["distill"], learning_rate=settings["distill_lr"])
            start = time.perf_counter()
            if settings["distill"] and settings["distill_data"] != settings["probes"]:
                raise SystemExit(f"{name}: probes and distillation read the same dataset here; set both alike")
            report = compress_and_save(model, processor, loaded, config, folder, model_name=args.model,
                                       calibration=probe_source, probe_clips=settings["probe_clips"],
                                       distillation=distillation, log=print)
            (folder / "study_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
            print(report.table())
        if args.build_only:
            continue
        lite, lite_processor = load_pytorch_model(folder, dtype="float32")
        results = evaluated(name, (lite, lite_processor))
        summary["methods"][name] = {"settings": settings, "seconds": float((folder / "study_seconds.txt").read_text()),
                                    "results": {label: _brief(result, dense[label]) for label, result in results.items()}}
        del lite
    if args.build_only:
        return
    (out / f"study{suffix}.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(table(summary))
    plot(summary, out / f"ratios{suffix}.png")


def _brief(result: dict, dense: dict | None = None) -> dict:
    brief = {"wer": round(result["wer"], 3), "loops": result["loops"], "clips": result["clips"],
             "cut_short": cut_short(result)}
    if dense is not None:
        brief["ratio"] = round(result["wer"] / dense["wer"], 4) if dense["wer"] else None
        brief["new_loops"] = sorted(set(result["loops"]) - set(dense["loops"]))
        brief["new_cut_short"] = sorted(set(brief["cut_short"]) - set(cut_short(dense)))
    return brief


def cut_short(result: dict) -> list[str]:
    """Utterances cut short; recomputed from the rows for evaluations saved before `cut_short` was recorded."""
    if "cut_short" in result:
        return result["cut_short"]
    return [u["id"] for u in result["utterances"]
            if is_cut_short(word_errors(normalize(u["reference"]), normalize(u["hypothesis"])))]


def plot(summary: dict, path: Path) -> None:
    """A heat map: one row per method, one column per dataset, the WER ratio to dense in each cell."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels, names = summary["datasets"], list(summary["methods"])
    ratios = np.array([[summary["methods"][name]["results"][label]["ratio"] for label in labels] for name in names])
    figure, axes = plt.subplots(figsize=(1.0 + 0.75 * len(labels), 1.2 + 0.45 * len(names)))
    image = axes.imshow(ratios, cmap="RdYlGn_r", vmin=0.8, vmax=2.0, aspect="auto")
    for row, name in enumerate(names):
        for column, label in enumerate(labels):
            loops = len(summary["methods"][name]["results"][label]["new_loops"])
            axes.text(column, row, f"{ratios[row, column]:.2f}" + ("*" if loops else ""), ha="center", va="center",
                      fontsize=8)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(names)), names, fontsize=8)
    figure.colorbar(image, ax=axes, label="WER / dense WER")
    axes.set_title(f"{summary['model']}: WER ratio to dense per dataset (* new looping utterance)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def geometric_mean(values) -> float:
    return float(math.exp(sum(math.log(v) for v in values) / len(values)))


def table(summary: dict) -> str:
    labels = summary["datasets"]
    short = [label.replace("-", "")[:9] for label in labels]
    lines = [f"{'method':<22} " + " ".join(f"{s:>9}" for s in short) + f" {'worst':>7} {'new loops':>9} {'new cut':>7} {'geo':>6} {'s':>6}"]
    lines.append(f"{'dense (WER %)':<22} " + " ".join(f"{summary['dense'][label]['wer']:>9.2f}" for label in labels))
    for name, entry in summary["methods"].items():
        results = entry["results"]
        ratios = [results[label]["ratio"] for label in labels[1:]] or [results[labels[0]]["ratio"]]
        new_loops = sum(len(results[label]["new_loops"]) for label in labels)
        new_cut = sum(len(results[label]["new_cut_short"]) for label in labels)
        lines.append(f"{name:<22} " + " ".join(f"{results[label]['wer']:>9.2f}" for label in labels)
                     + f" {max(ratios):>7.3f} {new_loops:>9} {new_cut:>7} {geometric_mean(ratios):>6.3f} {entry['seconds']:>6.0f}")
        lines.append(f"{'  ratio':<22} " + " ".join(f"{results[label]['ratio']:>9.3f}" for label in labels))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
