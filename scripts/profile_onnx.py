"""Where an exported ONNX encoder spends its time, by operator type (ONNX Runtime's own profiler).

    python scripts/profile_onnx.py runs/base-export/encoder.int8.onnx --threads 2 --runs 10 [--json out.json]

One 30 s clip of random features (batch 1), a warm-up of `--warmup` runs (3), then `--runs` profiled runs;
prints the median wall time and the kernel time per operator type, per run.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def profile(path: Path, threads: int, runs: int, warmup: int = 3) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    plain = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    mels = plain.get_inputs()[0].shape[1]  # 80, or 128 for large-v3 and turbo
    features = np.random.default_rng(0).standard_normal((1, mels, 3000)).astype(np.float32)
    for _ in range(warmup):
        plain.run(None, {"input_features": features})
    wall = []
    for _ in range(runs):
        start = time.perf_counter()
        plain.run(None, {"input_features": features})
        wall.append(1000 * (time.perf_counter() - start))
    with tempfile.TemporaryDirectory() as scratch:
        options.enable_profiling, options.profile_file_prefix = True, str(Path(scratch) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            session.run(None, {"input_features": features})
        events = json.loads(Path(session.end_profiling()).read_text())
    kernel_ms, nodes = collections.defaultdict(float), collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernel_ms[event["args"]["op_name"]] += event["dur"] / 1000 / runs
            nodes[event["args"]["op_name"]] += 1
    by_op = {op: {"ms": round(ms, 2), "nodes": nodes[op] // runs}
             for op, ms in sorted(kernel_ms.items(), key=lambda item: -item[1])}
    return {"model": str(path), "threads": threads, "runs": runs,
            "wall_ms_median": round(statistics.median(wall), 1), "kernel_ms_by_op": by_op}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    result = profile(args.model, args.threads, args.runs, args.warmup)
    print(f"{args.model}: median {result['wall_ms_median']} ms (batch 1, {args.threads} threads)")
    for op, row in result["kernel_ms_by_op"].items():
        print(f"  {op:28s} {row['ms']:7.1f} ms  ({row['nodes']} nodes)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
