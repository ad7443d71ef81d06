"""Which MatMuls int8 hurts most, in one pass: each one's int8 error carried to the encoder's output.

A MatMul's own relative int8 error says little about the damage it does: on a random tiny model
the two convolutions of the stem (mid-ranked by their own error) made almost all of the output's,
since everything after them carries it on. So the error dY_i that int8 adds to MatMul i's output
(simulated as ONNX Runtime computes it: `int8.quantize_encoder`) is carried to the output by the
encoder's Jacobian J_i, estimated with random probes r: E_r[(r . J_i dY_i)^2] = ||J_i dY_i||^2, and
r . J_i dY_i = (J_i^T r) . dY_i, one backward pass per probe for every MatMul at once.
"""

from __future__ import annotations

import ast
from pathlib import Path

import onnx
import torch
from torch import nn

from lite_whisper.deploy.onnx_graph import _ConvAsMatMul, _EncoderForOnnx


def output_sensitivity(encoder: nn.Module, features: torch.Tensor, onnx_path: str | Path, probes: int = 2,
                       seed: int = 0) -> dict[str, float]:
    """{ONNX MatMul node: ||J_i dY_i||^2 / ||output||^2} of the graph at `onnx_path`, exported from `encoder`.

    One forward pass on `features` (one clip is enough), `probes` backward passes (large-v3's encoder: 100 s on
    2 cores, ~6 GB besides the model). Nodes map to
    modules through the scopes the exporter records, in the same module tree (`_EncoderForOnnx`); nodes that
    map to no module are left out."""
    wrapper = _EncoderForOnnx(encoder).eval()
    generator = torch.Generator().manual_seed(seed)
    outputs: dict[str, torch.Tensor] = {}
    errors: dict[str, torch.Tensor] = {}

    def record(name: str, weight: torch.Tensor):
        def hook(module, args, output):
            x = module.taps(args[0]) if isinstance(module, _ConvAsMatMul) else args[0]
            with torch.no_grad():  # kept in bfloat16: large-v3 has 2.4 GB of them in float32
                errors[name] = (_int8_activations(x) @ _int8_weights(weight).T - x @ weight.T).to(torch.bfloat16)
            outputs[name] = output
        return hook

    # without the fused attention op of the export (it has no backward): the same function. Only the
    # MatMuls' outputs get gradients (autograd.grad): no weight gradients, nothing retained between probes.
    trainable = [parameter for parameter in wrapper.parameters() if parameter.requires_grad]
    with torch.enable_grad():  # the fast CPU route steps aside: gradients, hooks
        for parameter in trainable:
            parameter.requires_grad_(False)
        matmuls = {name: module for name, module in wrapper.named_modules()
                   if isinstance(module, (nn.Linear, _ConvAsMatMul))}
        handles = [module.register_forward_hook(record(name, module.weight.detach())) for name, module in matmuls.items()]
        try:
            output = wrapper(features.detach().clone().requires_grad_(True))
            names = list(outputs)
            harm = dict.fromkeys(matmuls, 0.0)
            for probe in range(probes):
                gradients = torch.autograd.grad(output, [outputs[name] for name in names],
                                                torch.randn(output.shape, generator=generator),
                                                retain_graph=probe < probes - 1)
                for name, gradient in zip(names, gradients):
                    harm[name] += float((gradient * errors[name].float()).sum()) ** 2 / probes
                del gradients
            norm = float(output.detach().square().sum())
        finally:
            for handle in handles:
                handle.remove()
            for parameter in trainable:
                parameter.requires_grad_(True)
    by_module = {name: value / norm for name, value in harm.items()}
    return {node: by_module[module] for node, module in onnx_matmul_modules(onnx_path, set(matmuls)).items()}


def onnx_matmul_modules(onnx_path: str | Path, modules: set[str]) -> dict[str, str]:
    """{MatMul node: the module it came from}, from the scopes torch's exporter records on each node."""
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    found = {}
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        scopes = next((ast.literal_eval(p.value) for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), [])
        # the export wraps each self-attention (`_FusedSelfAttention.attention`): its modules' scopes have one more step
        scopes = [scope.replace(".self_attn.attention.", ".self_attn.") for scope in scopes]
        owners = [scope for scope in scopes if scope in modules]
        if owners:
            found[node.name] = owners[-1]
    return found


def _int8_activations(x: torch.Tensor) -> torch.Tensor:
    """ONNX Runtime's DynamicQuantizeLinear and back: uint8, one scale and zero point for the tensor."""
    low, high = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (high - low) / 255 or 1.0
    zero = min(max(round(-low / scale), 0), 255)
    return (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale


def _int8_weights(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 in 7 bits (reduce_range: -64..64), and back; weight is (out, in)."""
    scale = weight.abs().amax(dim=1, keepdim=True) / 64
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    return torch.clamp(torch.round(weight / scale), -64, 64) * scale
