"""int8 copies of an ONNX encoder written tensor by tensor: ONNX Runtime's dynamic quantisation, the graph
it makes, without holding the model twice.

`onnxruntime.quantization.quantize_dynamic` loads the whole model, copies every initializer and
serialises it again: for large-v3-turbo's 2.5 GB encoder it added 7.4 GB to the export's peak, and
each trial of the int8 search (a set of MatMuls left float32) paid the whole quantisation again.
`Int8Writer` reads the graph once without its weights, quantises each MatMul's weight when first asked
(cached: int8 is a quarter of the float32 size), and writes a copy with any set of MatMuls quantised,
streaming every tensor to the external-data file one at a time. The weights and the nodes are the ones
ONNX Runtime's quantiser makes (per-channel symmetric int8 in 7 bits, `reduce_range`; one
DynamicQuantizeLinear per quantised input, MatMulInteger, Cast, two Muls, the same names): the test
holds them equal on a small model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ALIGNMENT = 4096  # each tensor's offset in the external-data file (what onnx's own writer uses for large tensors)
SMALL_TENSOR_BYTES = 1024  # tensors below this stay inside the graph file
REDUCED_INT8 = 64  # reduce_range: weights in [-64, 64], so AVX2's 16-bit pair sums of uint8 x int8 cannot saturate


def quantize_weight(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weight, float32 scale per column) of a MatMul's (in, out) float32 weight, as ONNX Runtime quantises it
    per channel (axis 1, symmetric, reduce_range): scale = max |column| / 64, q = round-half-even(w / scale)."""
    weight = np.asarray(weight, dtype=np.float32)
    absmax = np.maximum(np.abs(np.minimum(weight.min(axis=0), 0)), np.abs(np.maximum(weight.max(axis=0), 0)))
    scale = (absmax.astype(np.float64) * 2 / (2 * REDUCED_INT8)).astype(np.float32)
    scale = np.where(scale.astype(np.float64) < np.finfo(np.float32).tiny, np.float32(1.0), scale)  # an all-zero column
    quantised = np.clip(np.round(weight / scale), -128, 127).astype(np.int8)
    return quantised, scale


class Int8Writer:
    """The ONNX encoder at `source`, ready to be written with any set of its MatMuls in int8."""

    def __init__(self, source: str | Path):
        self.source = Path(source)
        self.model = onnx.load(str(self.source), load_external_data=False)
        graph = self.model.graph
        self.initializers = {tensor.name: tensor for tensor in graph.initializer}
        self.external = any(tensor.data_location == TensorProto.EXTERNAL for tensor in graph.initializer)
        # MatMuls with a constant 2-D float weight: what per-channel int8 can take
        self.candidates = {node.name: node.input[1] for node in graph.node if node.op_type == "MatMul"
                           and len(self.initializers.get(node.input[1], TensorProto()).dims) == 2
                           and self.initializers[node.input[1]].data_type == TensorProto.FLOAT}
        self._quantised: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def weight_shape(self, node: str) -> list[int]:
        return list(self.initializers[self.candidates[node]].dims)

    def _array(self, tensor: TensorProto) -> np.ndarray:
        if tensor.data_location == TensorProto.EXTERNAL:
            return numpy_helper.to_array(tensor, base_dir=str(self.source.parent))  # this tensor's bytes alone
        return numpy_helper.to_array(tensor)

    def _int8(self, weight_name: str) -> tuple[np.ndarray, np.ndarray]:
        if weight_name not in self._quantised:
            self._quantised[weight_name] = quantize_weight(self._array(self.initializers[weight_name]))
        return self._quantised[weight_name]

    def write(self, target: str | Path, quantise: set[str] | list[str]) -> None:
        """Write the encoder with the MatMuls named in `quantise` in int8 (the rest as they are) to `target`;
        external data (when the source has it) goes to `target`.data, a tensor at a time."""
        target = Path(target)
        unknown = set(quantise) - set(self.candidates)
        if unknown:
            raise ValueError(f"not MatMuls with a constant 2-D float weight: {sorted(unknown)}")
        graph = self.model.graph
        nodes, new_tensors, activations = [], [], {}
        for node in graph.node:
            if node.name not in quantise:
                nodes.append(node)
                continue
            x, weight, y = node.input[0], node.input[1], node.output[0]
            if x not in activations:  # one DynamicQuantizeLinear per input, shared by q, k and v
                activations[x] = (f"{x}_quantized", f"{x}_scale", f"{x}_zero_point")
                nodes.append(helper.make_node("DynamicQuantizeLinear", [x], list(activations[x]),
                                              name=f"{x}_QuantizeLinear"))
            x_quantised, x_scale, x_zero = activations[x]
            product = f"{node.name}_quant_scales_mul:0"
            integer = f"{y}_output_quantized"
            nodes += [
                helper.make_node("Mul", [x_scale, f"{weight}_scale"], [product], name=f"{node.name}_quant_scales_mul"),
                helper.make_node("MatMulInteger", [x_quantised, f"{weight}_quantized", x_zero, f"{weight}_zero_point"],
                                 [integer], name=f"{node.name}_quant"),
                helper.make_node("Cast", [integer], [f"{integer}_cast_output"], name=f"{integer}_cast",
                                 to=TensorProto.FLOAT),
                helper.make_node("Mul", [f"{integer}_cast_output", product], [y],
                                 name=f"{node.name}_quant_output_scale_mul"),
            ]
            new_tensors.append(weight)
        used = {name for node in nodes for name in node.input}
        copy = _without_initializers(self.model)
        del copy.graph.node[:]
        copy.graph.node.extend(nodes)
        del copy.graph.value_info[:]  # shapes of the replaced outputs' producers changed; ORT infers its own
        tensors = [(name, None) for name in self.initializers if name in used]
        tensors += [(name, "int8") for name in dict.fromkeys(new_tensors)]
        data_file = target.with_name(target.name + ".data")
        if not self.external:
            for name, kind in tensors:
                copy.graph.initializer.extend(self._tensors(name, kind))
            onnx.save(copy, str(target))
            return
        with open(data_file, "wb") as data:
            for name, kind in tensors:
                for tensor in self._tensors(name, kind):
                    if len(tensor.raw_data) >= SMALL_TENSOR_BYTES:  # small ones stay in the graph, as onnx writes them
                        _append_external(tensor, data, data_file.name)
                    copy.graph.initializer.append(tensor)
        onnx.save(copy, str(target))

    def _tensors(self, name: str, kind: str | None) -> list[TensorProto]:
        """The initializer `name` as it is (kind None), or its int8 weight, scale and zero point."""
        if kind is None:
            tensor = self.initializers[name]
            if tensor.data_location != TensorProto.EXTERNAL:
                return [tensor]
            return [numpy_helper.from_array(self._array(tensor), name)]
        quantised, scale = self._int8(name)
        return [numpy_helper.from_array(quantised, f"{name}_quantized"),
                numpy_helper.from_array(scale, f"{name}_scale"),
                numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{name}_zero_point")]


def _without_initializers(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` without its initializers (large models: the graph alone is copied)."""
    initializers = list(model.graph.initializer)
    del model.graph.initializer[:]
    try:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
    finally:
        model.graph.initializer.extend(initializers)
    return copy


def _append_external(tensor: TensorProto, data, location: str) -> None:
    """Move `tensor`'s bytes to the end of the open external-data file `data` (aligned) and point the tensor there."""
    raw = tensor.raw_data
    offset = data.tell()
    if offset % ALIGNMENT:
        data.write(b"\0" * (ALIGNMENT - offset % ALIGNMENT))
        offset = data.tell()
    data.write(raw)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(len(raw)))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
