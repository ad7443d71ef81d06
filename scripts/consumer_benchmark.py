"""optimum and transformers.js on `export --format optimum` folders: do they transcribe as lite-whisper does,
and what does the compression buy in transformers.js (Node)?

For each model (dense and compressed): export the optimum layout, transcribe N dev clips with
lite-whisper (PyTorch, greedy, text mode, no silence rule or recovery), optimum (model.generate and
transformers' pipeline, float32) and transformers.js (fp32 and q8); count identical transcripts, corpus
WER, and time transformers.js per clip and its encoder alone (median of runs after a warm-up).
Models run one after another on an idle machine; JSON out.

    python scripts/consumer_benchmark.py --model tiny.en --model runs/tiny.en-lite --clips 32 \\
        --work runs/consumers --output runs/consumers/result.json
Needs scripts/setup_consumers.sh (optimum's environment, transformers.js).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from lite_whisper import load_model
from lite_whisper.benchmark.consumers import corpus_wer, identical, run_optimum, run_transformers_js
from lite_whisper.benchmark.environment import environment
from lite_whisper.data.datasets import load_dataset
from lite_whisper.deploy.optimum_layout import export_optimum
from lite_whisper.lowrank.cost import encoder_flops, encoder_params
from lite_whisper.runtime.pytorch import PyTorchEngine
from lite_whisper.transcription.engine import transcribe_clips
from lite_whisper.transcription.types import DecodingOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="a model lite-whisper loads (repeat)")
    parser.add_argument("--data", default="../shared/speech/splits/dev.txt")
    parser.add_argument("--calibration", default="../shared/speech/splits/calibration.txt")
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--encoder-runs", type=int, default=5)
    parser.add_argument("--work", type=Path, required=True, help="folder for the exports (kept)")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    dev = list(load_dataset(args.data, limit=args.clips))
    calibration = [(c.id, c.audio) for c in load_dataset(args.calibration, limit=8)]
    references = [c.reference for c in dev]
    audio = [c.audio for c in dev]
    options = DecodingOptions(language="en", no_speech_threshold=None, recover_early_end=False)
    rows = []
    for spec in args.model:
        model, processor = load_model(spec)
        folder = args.work / (Path(spec).name + "-onnx")
        if not folder.exists():
            export_optimum(model, processor, folder, source=spec, parity_audio=[(c.id, c.audio) for c in dev[:4]],
                           calibration_audio=calibration, log=print)
        ours = [t.text.strip() for t in transcribe_clips(PyTorchEngine(model, processor), [(c.id, c.audio) for c in dev],
                                                         options=options)]
        row = {"model": spec, "folder": str(folder), "encoder_params": encoder_params(model),
               "encoder_flops": encoder_flops(model), "wer_lite_whisper": corpus_wer(references, ours)}
        optimum = run_optimum(folder, audio, pipeline=True)
        for way in ("generate", "pipeline"):
            row[f"optimum_{way}_identical"] = identical(optimum[way], ours)
            row[f"optimum_{way}_wer"] = corpus_wer(references, optimum[way])
        for dtype in ("fp32", "q8"):
            js = run_transformers_js(folder, audio, dtype, args.encoder_runs)
            row[f"transformers_js_{dtype}"] = {
                "identical": identical(js["texts"], ours),
                "wer": corpus_wer(references, js["texts"]),
                "median_clip_seconds": statistics.median(js["seconds"]),
                "total_seconds": sum(js["seconds"]),
                "median_encoder_seconds": statistics.median(js["encoder_seconds"]),
                "load_seconds": js["load_seconds"]}
        print(json.dumps(row, indent=1))
        rows.append(row)
    result = {"clips": len(dev), "environment": environment(), "rows": rows}
    if len(rows) == 2:
        dense, lite = rows
        result["lite_vs_dense"] = {
            dtype: {"encoder_speedup": dense[f"transformers_js_{dtype}"]["median_encoder_seconds"]
                    / lite[f"transformers_js_{dtype}"]["median_encoder_seconds"],
                    "end_to_end_speedup": dense[f"transformers_js_{dtype}"]["total_seconds"]
                    / lite[f"transformers_js_{dtype}"]["total_seconds"]}
            for dtype in ("fp32", "q8")}
        result["lite_vs_dense"]["encoder_flops_ratio"] = dense["encoder_flops"] / lite["encoder_flops"]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result.get("lite_vs_dense"), indent=1))


if __name__ == "__main__":
    main()
