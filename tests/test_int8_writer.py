"""The tensor-by-tensor int8 writer against ONNX Runtime's own quantiser: the same weights, the same graph, the same
outputs; external data streamed; its peak memory bounded by the model's size."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from lite_whisper.deploy.int8 import quantize_encoder
from lite_whisper.deploy.int8_writer import Int8Writer, quantize_weight
from lite_whisper.deploy.onnx_graph import export_encoder
from lite_whisper.models.random import random_whisper
from lite_whisper.runtime.onnx_encoder import OnnxEncoder


@pytest.fixture(scope="module")
def lite_encoder(tmp_path_factory):
    """A random tiny Whisper encoder at half the break-even ranks (two MatMuls a linear, reduced attention's 3-D
    constants), as float32 ONNX; and features of two random clips."""
    folder = tmp_path_factory.mktemp("int8-writer")
    model, processor = random_whisper("tiny", 0.5)
    source = export_encoder(model, folder / "encoder.onnx")
    audio = [0.1 * np.random.default_rng(seed).standard_normal(16000 * 4).astype(np.float32) for seed in range(2)]
    features = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="np").input_features
    return model, source, features


def reference_quantisation(source, target, exclude):
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(str(source), str(target), per_channel=True, weight_type=QuantType.QInt8, reduce_range=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=exclude)
    finally:
        logging.disable(logging.NOTSET)


def initializers(path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    return {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}


def test_the_writer_makes_onnx_runtimes_weights_graph_and_outputs(lite_encoder, tmp_path):
    _, source, features = lite_encoder
    writer = Int8Writer(source)
    names = list(writer.candidates)
    excluded = names[::5]  # some left float32, as the int8 search leaves them
    ours = tmp_path / "ours.onnx"
    kept = quantize_encoder(source, ours, exclude=excluded, writer=writer)
    assert set(excluded) <= set(kept)
    theirs = tmp_path / "theirs.onnx"
    reference_quantisation(source, theirs, kept)
    ours_tensors, their_tensors = initializers(ours), initializers(theirs)
    assert set(ours_tensors) == set(their_tensors)
    for name, array in their_tensors.items():
        assert ours_tensors[name].dtype == array.dtype and np.array_equal(ours_tensors[name], array), name
    assert any(name.endswith("_quantized") for name in ours_tensors)

    def ops(path):
        return sorted((node.op_type, node.name) for node in onnx.load(str(path), load_external_data=False).graph.node)

    assert ops(ours) == ops(theirs)
    assert np.array_equal(OnnxEncoder(ours, threads=1)(features), OnnxEncoder(theirs, threads=1)(features))


def test_the_weight_rule_is_onnx_runtimes_on_awkward_columns():
    from onnx import TensorProto
    from onnxruntime.quantization.quant_utils import quantize_data

    rng = np.random.default_rng(3)
    weight = rng.standard_normal((64, 6)).astype(np.float32)
    weight[:, 1] = 0.0  # an all-zero column
    weight[:, 2] = np.abs(weight[:, 2])  # one sign only
    weight[5, 3] = 1e4  # one outlier sets the column's scale
    weight[:, 4] = np.arange(64, dtype=np.float32) * 0.5 - 16  # exact halves: round half to even
    quantised, scale = quantize_weight(weight)
    for column in range(weight.shape[1]):
        zero, their_scale, theirs = quantize_data(weight[:, column], TensorProto.INT8, True, reduce_range=True)
        assert zero == 0 and scale[column] == their_scale, column
        assert np.array_equal(quantised[:, column], theirs), column


def test_external_data_is_streamed_and_transcribes_the_same(lite_encoder, tmp_path):
    model, _, features = lite_encoder
    source = export_encoder(model, tmp_path / "external.onnx", external_data_bytes=1)  # every weight outside
    assert (tmp_path / "external.onnx.data").exists()
    target = tmp_path / "int8.onnx"
    quantize_encoder(source, target)
    graph = onnx.load(str(target), load_external_data=False).graph
    outside = [tensor for tensor in graph.initializer if tensor.data_location == onnx.TensorProto.EXTERNAL]
    assert outside and {entry.value for tensor in outside for entry in tensor.external_data
                        if entry.key == "location"} == {"int8.onnx.data"}
    inline = tmp_path / "inline.int8.onnx"
    quantize_encoder(export_encoder(model, tmp_path / "inline.onnx"), inline)
    assert np.array_equal(OnnxEncoder(target, threads=1)(features), OnnxEncoder(inline, threads=1)(features))


PEAK = """
import json, sys
from pathlib import Path
from lite_whisper.memory import peak_rss_mb
from lite_whisper.deploy.int8 import quantize_encoder
from onnxruntime.quantization import QuantType, quantize_dynamic
source, target, kind = sys.argv[1:]
status = Path("/proc/self/status").read_text().splitlines()
before = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
if kind == "ours":
    quantize_encoder(source, target)
else:
    quantize_dynamic(source, target, per_channel=True, weight_type=QuantType.QInt8, reduce_range=True,
                     op_types_to_quantize=["MatMul"], use_external_data_format=True)
print(json.dumps({"added_mb": peak_rss_mb() - before}))
"""


def test_the_writers_peak_memory_is_a_fraction_of_the_float32_encoder(tmp_path):
    """A dense random base-sized encoder (~80 MB of float32 weights, outside the graph as large models keep them):
    quantising adds at most 0.6x the weights' size to the process's peak (the int8 weights, a quarter, and one tensor
    at a time); ONNX Runtime's quantiser, measured alongside, adds more than the weights' size."""
    model, _ = random_whisper("base")
    source = export_encoder(model.model.encoder, tmp_path / "encoder.onnx", external_data_bytes=1)
    del model
    weights_mb = (tmp_path / "encoder.onnx.data").stat().st_size / 2**20
    assert weights_mb > 60
    added = {}
    for kind in ("ours", "theirs"):
        done = subprocess.run([sys.executable, "-c", PEAK, str(source), str(tmp_path / f"{kind}.onnx"), kind],
                              capture_output=True, text=True, check=True)
        added[kind] = json.loads(done.stdout.strip().splitlines()[-1])["added_mb"]
    assert added["ours"] < 0.6 * weights_mb, (added, weights_mb)
    assert added["theirs"] > weights_mb, (added, weights_mb)  # what the writer saves
