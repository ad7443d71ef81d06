"""Measured damage of truncating one linear, where errors show: at the encoder's output.

Per-linear PCA minimises each linear's own output error, but the encoder's final layer norm
(and every layer norm on the way) rescales errors very unequally: the same discarded variance
costs little in one linear and a lot in another (tiny.en's last fc2, whose massive direction
the norm divides away, magnifies the error in the rest sevenfold). So the cost of keeping rank r
in linear i is estimated as

    cost_i(r) = s_i * D_i(r),    D_i(r) = sum of the eigenvalues beyond r (variance discarded),

with the sensitivity s_i measured once per linear: truncate that linear alone at a probe rank,
run the encoder on a few calibration clips, and divide the relative squared error of its final
output (after the last layer norm) by D_i(probe). Each probe runs the encoder only from the
truncated linear's layer on, from that layer's input recorded in one reference pass: on average
half an encoder pass per linear, with the same result.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from lite_whisper.compression.decomposition import low_rank_factors
from lite_whisper.lowrank.cost import break_even_rank, encoder_of
from lite_whisper.lowrank.modeling_lite_whisper import LowRankLinear
from lite_whisper.lowrank.targets import LOW_RANK_TARGETS


def probe_rank(d_in: int, d_out: int, multiple: int) -> int:
    """Half the break-even rank, in multiples: the middle of the ranks an allocation chooses from."""
    return max(multiple, int(break_even_rank(d_in, d_out) / 2) // multiple * multiple)


def discarded_variance(eigenvalues: Tensor) -> Tensor:
    """Entry r: the variance left out when keeping the top r directions (r = 0 .. d)."""
    tail = eigenvalues.flip(0).cumsum(0).flip(0)
    return torch.cat([tail, tail.new_zeros(1)])


def measure_sensitivities(
    model: nn.Module,
    bases: dict[tuple[int, str], tuple[Tensor, Tensor]],
    means: dict[tuple[int, str], Tensor],
    features: Tensor,
    multiple: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> dict[tuple[int, str], float]:
    """s_i for every (layer, target): relative squared output error per unit of discarded variance.

    `bases[key]` = (eigenvalues, eigenvectors) of that linear's output covariance, `means[key]`
    its output mean, `features` a batch of log-mel inputs. The model is restored afterwards.
    """
    encoder = encoder_of(model)
    features = features.to(device=encoder.conv1.weight.device, dtype=encoder.conv1.weight.dtype)
    layer_inputs, reference = record_layer_inputs(encoder, features)
    reference = reference.double()
    scale = reference.square().sum()
    sensitivities = {}
    for done, ((layer, name), (eigenvalues, eigenvectors)) in enumerate(bases.items()):
        parent_path, _, attribute = LOW_RANK_TARGETS[name][0].rpartition(".")
        parent = encoder.layers[layer].get_submodule(parent_path) if parent_path else encoder.layers[layer]
        dense = getattr(parent, attribute)
        rank = probe_rank(dense.in_features, dense.out_features, multiple)
        discarded = float(discarded_variance(eigenvalues)[rank])
        if discarded <= 0:  # nothing to lose at this rank: any rank down to it is free
            sensitivities[layer, name] = 0.0
            continue
        a, b, bias = low_rank_factors(dense.weight, dense.bias, means[layer, name], eigenvectors[:, :rank])
        dtype = dense.weight.dtype
        setattr(parent, attribute, LowRankLinear.from_factors(a.to(dtype), b.to(dtype), bias.to(dtype)))
        try:
            output = run_from(encoder, layer, layer_inputs[layer]).double()
        finally:
            setattr(parent, attribute, dense)
        sensitivities[layer, name] = float((output - reference).square().sum() / scale) / discarded
        if progress is not None:
            progress(done + 1, len(bases))
    return sensitivities


def record_layer_inputs(encoder: nn.Module, features: Tensor) -> tuple[list[Tensor], Tensor]:
    """(the input of every encoder layer, the final output) of one pass on `features`."""
    inputs: list[Tensor] = []
    handles = [layer.register_forward_pre_hook(lambda module, args: inputs.append(args[0].clone()))
               for layer in encoder.layers]
    try:
        with torch.inference_mode():
            output = encoder(features).last_hidden_state
    finally:
        for handle in handles:
            handle.remove()
    if len(inputs) != len(encoder.layers):
        raise RuntimeError(f"recorded {len(inputs)} layer inputs for {len(encoder.layers)} layers")
    return inputs, output


def run_from(encoder: nn.Module, first: int, hidden_states: Tensor) -> Tensor:
    """The encoder's final output (after its layer norm) computed from layer `first`'s input."""
    with torch.inference_mode():
        for layer in encoder.layers[first:]:
            hidden_states = layer(hidden_states, None)  # how WhisperEncoder calls its layers (transformers 5)
            if isinstance(hidden_states, tuple):
                hidden_states = hidden_states[0]
        return encoder.layer_norm(hidden_states)
