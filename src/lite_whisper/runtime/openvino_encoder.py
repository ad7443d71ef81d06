"""The exported float32 encoder run by OpenVINO in bfloat16, on CPUs with bfloat16 arithmetic (AMX, AVX512_BF16).

ONNX Runtime's CPU provider has no bfloat16 kernels and no int8 attention, so on base its int8
encoder still spends over half its time in float32 attention. OpenVINO reads the same
`encoder.onnx` (including ONNX Runtime's fused `MultiHeadAttention`) and, with its inference
precision set to bfloat16, runs the MatMuls and the attention on the CPU's bfloat16 units: base
distill-75, batch 1, 2 threads, 75 ms against 166 ms for ONNX Runtime int8 in the same run,
with a smaller error (1.3% relative to PyTorch against 4.7%; docs/RESULTS.md §8). No second file: the weights stay float32 on
disk and OpenVINO converts them when it compiles the graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def bfloat16_supported() -> bool:
    """Whether OpenVINO is installed and reports native bfloat16 on this CPU (AMX or AVX512_BF16)."""
    try:  # optional: without OpenVINO there is no bfloat16 encoder
        import openvino as ov
    except ImportError:
        return False
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoEncoder:
    """An OpenVINO compiled `encoder.onnx`: log-mel features in, encoder states out (float32).

    bfloat16 has no per-call activation scale (unlike ONNX Runtime's dynamic int8), so a batch
    runs in one call and a clip's states do not depend on its batch-mates beyond rounding.
    """

    def __init__(self, path: str | Path, threads: int | None = None, precision: str = "bf16"):
        import openvino as ov  # optional (see bfloat16_supported)

        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
                  # CTranslate2 decodes right after on the same cores: OpenVINO must not hold them
                  "ENABLE_CPU_PINNING": False}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        self.path = Path(path)
        self.precision = precision
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """(batch, n_mels, 3000) float32 -> (batch, 1500, d_model) float32, C-contiguous."""
        features = np.ascontiguousarray(features, dtype=np.float32)
        # the request's output buffer is reused by the next call: copy it out
        return np.array(self.request.infer({0: features})[0], dtype=np.float32, order="C", copy=True)
