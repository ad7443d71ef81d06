"""An exported encoder on ONNX Runtime: log-mel features in, encoder states out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

INPUT_NAME = "input_features"
OUTPUT_NAME = "last_hidden_state"


class OnnxEncoder:
    """An ONNX Runtime session for an exported encoder: log-mel features in, encoder states out.

    An int8 encoder (dynamic quantisation) runs one clip at a time: it takes one activation scale
    per MatMul call, so in a batch the loudest clip would set every clip's int8 step and a clip's
    transcript would depend on the clips batched with it.
    """

    def __init__(self, path: str | Path, threads: int | None = None):
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # CTranslate2 decodes right after on the same cores: idle ORT threads must not spin
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(str(path), load_external_data=False).graph
        self.one_clip_at_a_time = any(node.op_type == "DynamicQuantizeLinear" for node in graph.node)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """(batch, n_mels, 3000) float32 -> (batch, 1500, d_model) float32, C-contiguous."""
        features = np.ascontiguousarray(features, dtype=np.float32)
        if self.one_clip_at_a_time and features.shape[0] > 1:
            return np.concatenate([self._run(features[i: i + 1]) for i in range(features.shape[0])])
        return self._run(features)

    def _run(self, features: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self.session.run([OUTPUT_NAME], {INPUT_NAME: features})[0])
