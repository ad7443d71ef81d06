"""Error-aware sequential fitting: each linear fitted to the dense outputs from the inputs the compressed model
really produces (issue 34, METHOD §8).

Per-linear PCA (METHOD §4) is the best rank-k map *given the dense input*. In the compressed model every
linear after the first sees an input already bent by the truncations before it. Here the encoder is compressed
in the order data flows — layer by layer, and inside a layer q/k/v, then out_proj, fc1, fc2 — and each linear
is fitted on a few calibration clips run through the dense encoder and through the part already compressed:

    minimise over rank(M) <= k:   E_c |x_c M + b' - y_d|^2  +  mix * E_d |x_d M + b' - y_d|^2

x_c is the compressed model's input to the linear, x_d the dense model's, y_d = x_d W^T + b the dense output.
The second term (the dense inputs, weighted by `mix`) keeps the fit honest where the compressed inputs alone
would let it extrapolate, and a ridge towards the dense weight holds directions the clips barely excite (the
failure METHOD §8 measured: a plain least-squares refit broke babble noise). With G = C_cc + mix C_dd and
R = C_cd + mix C_dd (centred covariances), the solution is reduced-rank regression in the metric G:

    M* = (G + eps I)^-1 (R + eps I) W^T       eps = ridge * trace(G) / d_in: the ridge pulls towards W^T
    V_k = top-k eigenvectors of M*^T G M*      (the fitted outputs' principal directions)
    A = M* V_k,  B = V_k^T,  b' = mu_y - mu_in A B     (mu_in: the inputs' mean, the two terms pooled)

With exact inputs (x_c = x_d) M* = W^T and V_k are the PCA directions of W C W^T: today's factors exactly.
Statistics are sums (`Moments` of the concatenated [x_c, x_d]), so shards of clips add up to one pass.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from lite_whisper.calibration.moments import Moments
from lite_whisper.lowrank.cost import encoder_of
from lite_whisper.lowrank.modeling_lite_whisper import LowRankLinear
from lite_whisper.lowrank.targets import LOW_RANK_TARGETS

Factors = dict[tuple[int, str], tuple[Tensor, Tensor, Tensor]]

# The four inputs of an encoder layer, in data order, and the linears that read each.
SITES: dict[str, tuple[str, ...]] = {"qkv": ("q_proj", "k_proj", "v_proj"), "out": ("out_proj",),
                                     "fc1": ("fc1",), "fc2": ("fc2",)}
_SITE_MODULE = {"qkv": "self_attn.q_proj", "out": "self_attn.out_proj", "fc1": "fc1", "fc2": "fc2"}


def regression_factors(weight: Tensor, bias: Tensor | None, joint: Moments, rank: int, mix: float = 1.0,
                       ridge: float = 1e-2) -> tuple[Tensor, Tensor, Tensor]:
    """The rank-`rank` factors (A, B, bias'), float64, of y = x W^T + b fitted as the module docstring says.

    `joint`: moments of the rows [x_c, x_d] (width 2 d_in) — the compressed and the dense model's inputs to
    this linear on the same frames. `mix` >= 0 weighs the dense inputs' term, `ridge` >= 0 the pull towards W.
    """
    w = weight.detach().to(device=joint.sum.device, dtype=torch.float64)
    d_out, d_in = w.shape
    if joint.dim != 2 * d_in:
        raise ValueError(f"joint moments of width {joint.dim} do not describe two inputs of width {d_in}")
    if not 0 < rank < d_out:
        raise ValueError(f"rank must be between 1 and {d_out - 1}, got {rank}")
    if mix < 0 or ridge < 0:
        raise ValueError(f"mix and ridge must be >= 0, got {mix} and {ridge}")
    b = torch.zeros(d_out, dtype=torch.float64, device=w.device) if bias is None else \
        bias.detach().to(device=w.device, dtype=torch.float64)
    mean = joint.mean()
    covariance = joint.covariance()
    mean_c, mean_d = mean[:d_in], mean[d_in:]
    c_cc, c_cd, c_dd = covariance[:d_in, :d_in], covariance[:d_in, d_in:], covariance[d_in:, d_in:]
    metric = c_cc + mix * c_dd
    target = c_cd + mix * c_dd
    eps = ridge * float(torch.trace(metric)) / d_in
    eye = torch.eye(d_in, dtype=torch.float64, device=w.device)
    fitted = torch.linalg.solve(metric + eps * eye, (target + eps * eye) @ w.T)  # M* (d_in, d_out)
    # principal directions of the fitted outputs x M* under the metric: eigenvectors of M*^T G M*, from the SVD
    # of G^(1/2) M* (d_in x d_out, never a d_out x d_out eigenproblem for fc1)
    values, vectors = torch.linalg.eigh(metric)
    root = vectors * values.clamp_min(0.0).sqrt()
    _, _, right = torch.linalg.svd(root.T @ fitted, full_matrices=False)
    basis = right[:rank].T  # V_k (d_out, k)
    a = fitted @ basis
    mean_in = (mean_c + mix * mean_d) / (1.0 + mix)
    mean_y = w @ mean_d + b
    return a, basis.T.contiguous(), mean_y - (mean_in @ a) @ basis.T


class _Stop(Exception):
    """Raised by a hook once the activation it waits for is captured: the rest of the forward is not needed."""


def _capture(module: nn.Module, store: dict, key: str, stop: bool = False):
    def hook(_module, args):
        store[key] = args[0]
        if stop:
            raise _Stop

    return module.register_forward_pre_hook(hook)


def layer_input(encoder: nn.Module, features: Tensor) -> Tensor:
    """The input of the first encoder layer (conv stem + positions) for a batch of log-mel features."""
    store: dict = {}
    handle = _capture(encoder.layers[0], store, "h", stop=True)
    try:
        encoder(features)
    except _Stop:
        pass
    finally:
        handle.remove()
    return store["h"]


def dense_sites(layer: nn.Module, hidden: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """(the inputs of the four sites, the layer's output) of one layer's own forward."""
    store: dict = {}
    handles = [_capture(layer.get_submodule(path), store, site) for site, path in _SITE_MODULE.items()]
    try:
        output = layer(hidden, None)  # how WhisperEncoder calls its layers (transformers 5)
    finally:
        for handle in handles:
            handle.remove()
    return store, output[0] if isinstance(output, tuple) else output


def _attention_context(layer: nn.Module, normed: Tensor) -> Tensor:
    """out_proj's input (the heads' concatenated context) for the layer's attention on `normed`."""
    store: dict = {}
    handle = _capture(layer.self_attn.out_proj, store, "ctx", stop=True)
    try:
        layer.self_attn(hidden_states=normed, attention_mask=None)
    except _Stop:
        pass
    finally:
        handle.remove()
    return store["ctx"]


def _clamped(hidden: Tensor) -> Tensor:
    """WhisperEncoderLayer's float16 clamp."""
    if hidden.dtype == torch.float16:
        limit = torch.finfo(hidden.dtype).max - 1000
        return hidden.clamp(min=-limit, max=limit)
    return hidden


def sequential_factors(
    model: nn.Module,
    ranks: dict[tuple[int, str], int | None],
    features: Tensor,
    *,
    mix: float = 1.0,
    ridge: float = 1e-2,
    stride: int = 2,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> Factors:
    """Factors for every (layer, name) whose rank is not None, fitted in data order on `features`.

    `features`: log-mel inputs (clips, n_mels, 3000) — a few calibration clips (64 by default in
    `compress`). Every `stride`-th frame of every clip enters the statistics (neighbouring frames say
    nearly the same; all frames still run through attention). The model is not modified: each layer is
    compressed in a copy, layer-boundary states of both streams (dense and compressed) are kept for the clips
    (2 x clips x 1500 x d_model values). `progress(done, total)` is called after each site.
    """
    encoder = encoder_of(model)
    parameter = next(encoder.parameters())
    features = features.to(device=parameter.device, dtype=parameter.dtype)
    chunks = list(torch.split(features, batch_size))
    factors: Factors = {}
    total, done = len(encoder.layers) * len(SITES), 0
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.inference_mode():
            dense_h = [layer_input(encoder, chunk) for chunk in chunks]
            lite_h = [h.clone() for h in dense_h]
            for index, dense in enumerate(encoder.layers):
                lite = _copy_layer(dense)
                recorded = []  # per chunk: the dense inputs of the four sites, every stride-th frame
                for c, h in enumerate(dense_h):
                    sites, dense_h[c] = dense_sites(dense, h)
                    recorded.append({site: x[:, ::stride] for site, x in sites.items()})

                def fit(site: str, lite_inputs: list[Tensor]) -> None:
                    nonlocal done
                    names = [name for name in SITES[site] if ranks.get((index, name)) is not None]
                    if names:
                        width = lite_inputs[0].shape[-1]
                        joint = Moments.zeros(2 * width, device=parameter.device)
                        for x, sites in zip(lite_inputs, recorded):  # both already every stride-th frame
                            joint.update(torch.cat([x, sites[site]], dim=-1))
                        for name in names:
                            module = lite.get_submodule(LOW_RANK_TARGETS[name][0])
                            a, b, bias = regression_factors(module.weight, module.bias, joint, ranks[index, name],
                                                            mix, ridge)
                            factors[index, name] = tuple(t.to(parameter.dtype) for t in (a, b, bias))
                            _install(lite, name, factors[index, name])
                    done += 1
                    if progress is not None:
                        progress(done, total)

                # attention needs every frame; what follows it works row by row, so the statistics
                # passes compute only the frames they keep
                fit("qkv", [lite.self_attn_layer_norm(h[:, ::stride]) for h in lite_h])
                contexts = [_attention_context(lite, lite.self_attn_layer_norm(h)) for h in lite_h]
                fit("out", [ctx[:, ::stride] for ctx in contexts])
                middle = [h + lite.self_attn.out_proj(ctx) for h, ctx in zip(lite_h, contexts)]
                del contexts
                fit("fc1", [lite.final_layer_norm(h[:, ::stride]) for h in middle])
                fit("fc2", [lite.activation_fn(lite.fc1(lite.final_layer_norm(h[:, ::stride]))) for h in middle])
                lite_h = [_clamped(h + lite.fc2(lite.activation_fn(lite.fc1(lite.final_layer_norm(h)))))
                          for h in middle]
                del recorded, middle, lite
    finally:
        encoder.train(was_training)
    return factors


def _copy_layer(layer: nn.Module) -> nn.Module:
    """A copy of one dense layer whose linears can be swapped without touching the model."""
    return copy.deepcopy(layer)


def _install(layer: nn.Module, name: str, factor: tuple[Tensor, Tensor, Tensor]) -> None:
    parent_path, _, attribute = LOW_RANK_TARGETS[name][0].rpartition(".")
    parent = layer.get_submodule(parent_path) if parent_path else layer
    setattr(parent, attribute, LowRankLinear.from_factors(*factor))
