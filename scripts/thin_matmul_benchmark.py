"""How fast ONNX Runtime's int8 MatMuls run at the ranks low-rank linears take (issue 37 item 2).

    python scripts/thin_matmul_benchmark.py --shape 512x512 --shape 512x2048 --shape 2048x512 \
        --ranks 48-256/16 --threads 2 --repeats 15 --json runs/thin-matmuls.json

For each shape (d_in x d_out, a 30 s window's 1,500 rows) and rank r, one low-rank linear as `export --int8`
writes it (x A then B plus bias, both MatMuls int8 with activations quantised on the fly:
`deploy.int8.quantize_encoder`) and the dense linear it replaces, timed taking turns (A B C ... A B C,
medians after a warm-up: `encoder_timing.time_interleaved`, the rule `bench` uses). Prints each pair's
time, its speed-up over dense, the FLOP-predicted speed-up (d_in d_out / (r (d_in + d_out))) and their
ratio, the efficiency: where it dips at ranks that are not multiples of 32 or 64, rounding ranks to those
would pay. Random weights: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from lite_whisper.benchmark.encoder_timing import time_interleaved
from lite_whisper.benchmark.environment import environment
from lite_whisper.deploy.int8 import quantize_encoder

ROWS = 1500  # a 30 s window's encoder positions


def linear_graph(weights: list[np.ndarray], bias: np.ndarray) -> onnx.ModelProto:
    """x (1, ROWS, d_in) through MatMuls by `weights` in turn, then + bias."""
    nodes, initializers, current = [], [], "x"
    for index, weight in enumerate(weights):
        initializers.append(numpy_helper.from_array(weight, f"w{index}"))
        nodes.append(helper.make_node("MatMul", [current, f"w{index}"], [f"h{index}"], name=f"matmul{index}"))
        current = f"h{index}"
    initializers.append(numpy_helper.from_array(bias, "bias"))
    nodes.append(helper.make_node("Add", [current, "bias"], ["y"], name="bias"))
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, ROWS, weights[0].shape[0]])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, ROWS, weights[-1].shape[1]])]
    graph = helper.make_graph(nodes, "linear", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def int8_session(weights: list[np.ndarray], bias: np.ndarray, folder: Path, name: str, threads: int):
    source, target = folder / f"{name}.onnx", folder / f"{name}.int8.onnx"
    onnx.save(linear_graph(weights, bias), str(source))
    quantize_encoder(source, target)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    # many sessions take turns here: threads left spinning after one session's run would steal the next one's cores
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])


def parse_ranks(text: str) -> list[int]:
    """"48-256/16" -> 48, 64, ..., 256; "64,96,128" -> those."""
    if "-" in text:
        span, _, step = text.partition("/")
        first, last = map(int, span.split("-"))
        return list(range(first, last + 1, int(step or 16)))
    return [int(part) for part in text.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", action="append", help="d_in x d_out, e.g. 512x2048 (default: base's three)")
    parser.add_argument("--ranks", default="48-256/16", help="first-last/step or a comma list (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    try:
        given = args.shape or ["512x512", "512x2048", "2048x512"]
        shapes = [tuple(map(int, shape.lower().split("x"))) for shape in given]
        ranks = parse_ranks(args.ranks)
    except ValueError:
        print("error: --shape takes d_inxd_out (e.g. 512x2048) and --ranks first-last/step or a comma list",
              file=sys.stderr)
        return 2
    if not ranks or any(rank < 1 for rank in ranks) or any(d < 1 for shape in shapes for d in shape):
        print("error: ranks and dimensions must be positive", file=sys.stderr)
        return 2
    generator = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="thin-matmuls-") as scratch:
        for d_in, d_out in shapes:
            x = torch.from_numpy(generator.standard_normal((1, ROWS, d_in)).astype(np.float32))
            bias = generator.standard_normal(d_out).astype(np.float32)
            sessions = [int8_session([generator.standard_normal((d_in, d_out)).astype(np.float32) / d_in**0.5],
                                     bias, Path(scratch), f"dense-{d_in}x{d_out}", args.threads)]
            for rank in ranks:
                factors = [generator.standard_normal((d_in, rank)).astype(np.float32) / d_in**0.5,
                           generator.standard_normal((rank, d_out)).astype(np.float32) / rank**0.5]
                sessions.append(int8_session(factors, bias, Path(scratch), f"r{rank}-{d_in}x{d_out}", args.threads))
            # taking turns: load drifts hit every contender alike
            samples = time_interleaved([lambda f, s=session: s.run(None, {"x": f.numpy()}) for session in sessions],
                                       x, args.repeats, args.warmup)
            dense_ms, *pair_ms = [statistics.median(times) for times in samples]
            for rank, ms in zip(ranks, pair_ms):
                predicted = d_in * d_out / (rank * (d_in + d_out))
                rows.append({"shape": f"{d_in}x{d_out}", "rank": rank, "ms": round(ms, 3),
                             "dense_ms": round(dense_ms, 3), "speedup": round(dense_ms / ms, 3),
                             "predicted": round(predicted, 3),
                             "efficiency": round(dense_ms / ms / predicted, 3)})
                print(f"{d_in}x{d_out} r={rank:<4} {ms:7.3f} ms (dense {dense_ms:.3f}): {dense_ms / ms:5.2f}x, "
                      f"FLOPs predict {predicted:5.2f}x, efficiency {dense_ms / ms / predicted:.2f}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "threads": args.threads, "repeats": args.repeats,
                                         "environment": environment()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
