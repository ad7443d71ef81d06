"""`lite-whisper inspect`: ranks, parameters and FLOPs of a saved (or any) model."""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(commands) -> None:
    p = commands.add_parser(
        "inspect", help="print ranks, parameters and FLOPs of a saved model",
        description="Print the per-layer ranks, encoder parameters and encoder FLOPs of a model: from its "
        "compression report when the folder has one, else read off the model itself.",
        epilog="example: lite-whisper inspect tiny.en-lite",
    )
    p.add_argument("model", help="a lite-whisper folder (or any model spec)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from lite_whisper.compression.report import REPORT_FILE, CompressionReport, structural_report
    from lite_whisper.models.loading import load_pytorch_model

    saved = Path(args.model) / REPORT_FILE
    if saved.exists():
        report = CompressionReport.load(saved)
    else:
        model, _ = load_pytorch_model(args.model)
        report = structural_report(model, model_name=args.model)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())
    return 0
