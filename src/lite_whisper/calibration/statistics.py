"""Calibration statistics: the moments of every target linear of an encoder, and their file format.

Moments are accumulated on the cheaper side of each linear and mapped through its
weights exactly when asked (`Moments.affine`): q, k and v read the same hidden
states, so one d x d input matrix serves all three; fc1's d-wide input is cheaper than
its 4d-wide output; out_proj and fc2 are measured on their outputs.

Statistics carry the encoder's shape and a fingerprint of its weights, so they are never
applied to another model by mistake (tiny's statistics to tiny.en, say): the moments of
q/k/v/fc1 are mapped through the weights of the model being compressed, which must be the
weights they were measured with.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from lite_whisper.calibration.moments import Moments
from lite_whisper.files import atomic_file
from lite_whisper.lowrank.cost import encoder_of
from lite_whisper.lowrank.targets import LOW_RANK_TARGETS

Side = Literal["input", "output"]

# target -> (side that is measured, target whose module carries the hook). k and v reuse
# q's input: WhisperAttention feeds the same hidden states to all three projections.
SOURCES: dict[str, tuple[Side, str]] = {
    "q_proj": ("input", "q_proj"),
    "k_proj": ("input", "q_proj"),
    "v_proj": ("input", "q_proj"),
    "out_proj": ("output", "out_proj"),
    "fc1": ("input", "fc1"),
    "fc2": ("output", "fc2"),
}
# The hooked sites, each as (target, side), in table order.
SITES: tuple[tuple[str, Side], ...] = tuple(dict.fromkeys((hooked, side) for side, hooked in SOURCES.values()))

_FORMAT = "lite-whisper-statistics"
_VERSION = 2  # 2: weight fingerprint. Version 1 files (no fingerprint) are still read.
_READABLE_VERSIONS = (1, 2)
_METADATA_KEY = "lite_whisper_statistics"
_FINGERPRINT_SAMPLES = 4096  # values hashed per weight matrix


class StatisticsMismatchError(ValueError):
    """Statistics belong to another model than the one they are applied to."""


def weight_fingerprint(model: nn.Module) -> str:
    """A short hash of the encoder weights that statistics depend on.

    Hashes the shapes and an evenly strided sample of the stem and of every q_proj and fc1
    weight (the weights the input moments are mapped through), rounded to float16 so the same
    checkpoint loaded in float32 or float16 has the same fingerprint. Cheap at any model size.
    """
    digest = hashlib.sha256()
    encoder = encoder_of(model)
    tensors = [encoder.conv1.weight]
    for index, layer in enumerate(encoder.layers):
        for name in ("q_proj", "fc1"):
            weight = getattr(layer.get_submodule(LOW_RANK_TARGETS[name][0]), "weight", None)
            if weight is None:
                raise StatisticsMismatchError(
                    f"encoder layer {index} {name} is already low-rank: statistics are taken on "
                    "(and applied to) a dense model"
                )
            tensors.append(weight)
    for tensor in tensors:
        flat = tensor.detach().reshape(-1)
        stride = max(1, flat.numel() // _FINGERPRINT_SAMPLES)
        sample = flat[::stride].to(device="cpu", dtype=torch.float16).contiguous()
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ModelSignature:
    """The encoder shape statistics belong to, a free-form model name and a weight fingerprint."""

    d_model: int
    encoder_layers: int
    encoder_attention_heads: int
    encoder_ffn_dim: int
    num_mel_bins: int
    model_name: str = ""
    fingerprint: str | None = None  # `weight_fingerprint`; None in version-1 files

    @classmethod
    def of(cls, model: nn.Module, model_name: str = "") -> ModelSignature:
        """Read the signature from a Whisper model's config and weights."""
        config = model.config
        return cls(
            d_model=config.d_model,
            encoder_layers=config.encoder_layers,
            encoder_attention_heads=config.encoder_attention_heads,
            encoder_ffn_dim=config.encoder_ffn_dim,
            num_mel_bins=config.num_mel_bins,
            model_name=model_name,
            fingerprint=weight_fingerprint(model),
        )

    def shape(self) -> tuple[int, ...]:
        return (self.d_model, self.encoder_layers, self.encoder_attention_heads, self.encoder_ffn_dim, self.num_mel_bins)

    def same_architecture(self, other: ModelSignature) -> bool:
        """True when the shapes agree, whatever the names and weights."""
        return self.shape() == other.shape()

    def describe(self) -> str:
        shape = (
            f"d_model={self.d_model}, {self.encoder_layers} layers, {self.encoder_attention_heads} heads, "
            f"ffn {self.encoder_ffn_dim}, {self.num_mel_bins} mels"
        )
        return f"{shape} ({self.model_name})" if self.model_name else shape


@dataclass
class CalibrationStatistics:
    """Moments of every target linear of an encoder, gathered on calibration audio.

    `moments` is keyed by (layer index, hooked target, side); use `output_moments` or
    `derive_output_moments` to get the output moments of any target of the table.
    `calibration_frames` counts encoder frames that carry audio (20 ms each), padding
    excluded, whatever `exclude_padding` says; `Moments.count` counts the rows that
    entered the sums (1500 per clip unless padding is excluded).
    """

    signature: ModelSignature
    exclude_padding: bool
    calibration_clips: int = 0
    calibration_frames: int = 0
    moments: dict[tuple[int, str, Side], Moments] = field(default_factory=dict)
    # how the sums were computed: the encoder's dtype, whether TF32 was allowed, the products' and sums'
    # precision (empty in files written before it was recorded)
    precision: dict[str, Any] = field(default_factory=dict)

    def output_moments(
        self, layer: int, name: str, weight: Tensor | None = None, bias: Tensor | None = None
    ) -> Moments:
        """Output moments of target `name` in encoder layer `layer`.

        Targets measured on their input (q, k, v, fc1) need that linear's unmodified
        `weight` and `bias` to be mapped to the output side; the others ignore them.
        """
        if name not in SOURCES:
            raise KeyError(f"unknown target {name!r}; known: {', '.join(SOURCES)}")
        side, hooked = SOURCES[name]
        moments = self.moments[(layer, hooked, side)]
        if side == "output":
            return moments
        if weight is None:
            raise ValueError(
                f"{name} statistics are kept on its input: pass its weight (and bias) to get output moments"
            )
        return moments.affine(weight, bias)

    def derive_output_moments(
        self, model: nn.Module, allow_other_weights: bool = False
    ) -> dict[tuple[int, str], Moments]:
        """Output moments of every (layer, target), using the weights of the unmodified `model`."""
        self.check_compatible(model, allow_other_weights=allow_other_weights)
        return dict(self.iter_output_moments(model))

    def iter_output_moments(self, model: nn.Module):
        """((layer, target), output moments) one at a time, so only one derived matrix need be alive.

        Shapes and weights are not checked here: call `check_compatible` first."""
        for index, layer in enumerate(encoder_of(model).layers):
            for name, (path, _) in LOW_RANK_TARGETS.items():
                linear = layer.get_submodule(path)
                yield (index, name), self.output_moments(index, name, linear.weight, linear.bias)

    def check_compatible(self, model: nn.Module, allow_other_weights: bool = False) -> None:
        """Raise StatisticsMismatchError when `model` is not the model these statistics were taken on.

        Shapes must always agree. Weights must agree too (same fingerprint) unless
        `allow_other_weights`; files without a fingerprint (version 1) are checked by shape only.
        """
        theirs = ModelSignature.of(model)
        if not self.signature.same_architecture(theirs):
            raise StatisticsMismatchError(
                f"statistics were collected on a model with {self.signature.describe()}; "
                f"this model has {theirs.describe()}"
            )
        mine = self.signature.fingerprint
        if not allow_other_weights and mine is not None and mine != theirs.fingerprint:
            origin = f" ({self.signature.model_name})" if self.signature.model_name else ""
            raise StatisticsMismatchError(
                f"statistics were collected on other weights{origin}, fingerprint {mine}; this model's is "
                f"{theirs.fingerprint}. Calibrate this model, or pass --allow-stats-mismatch to use them anyway"
            )

    def merge(self, other: CalibrationStatistics) -> CalibrationStatistics:
        """Statistics of the union of both calibration sets (moments and counts add)."""
        if self.signature.shape() != other.signature.shape() or self.signature.fingerprint != other.signature.fingerprint:
            raise StatisticsMismatchError(
                f"cannot merge statistics of different models: {self.signature.describe()} "
                f"[{self.signature.fingerprint}] vs {other.signature.describe()} [{other.signature.fingerprint}]"
            )
        if self.exclude_padding != other.exclude_padding:
            raise ValueError(
                f"cannot merge statistics with exclude_padding={self.exclude_padding} "
                f"and exclude_padding={other.exclude_padding}"
            )
        if self.moments.keys() != other.moments.keys():
            raise ValueError("cannot merge statistics that cover different layers or sites")
        return CalibrationStatistics(
            signature=self.signature,
            exclude_padding=self.exclude_padding,
            calibration_clips=self.calibration_clips + other.calibration_clips,
            calibration_frames=self.calibration_frames + other.calibration_frames,
            moments={key: moments + other.moments[key] for key, moments in self.moments.items()},
            precision=self.precision if self.precision == other.precision else {"merged": [self.precision,
                                                                                           other.precision]},
        )

    def digest(self) -> str:
        """A hash of the contents (counts, sums, the diagonals of the outer sums): equal statistics, equal digest."""
        digest = hashlib.sha256(json.dumps([asdict(self.signature), self.exclude_padding,
                                            self.calibration_clips, self.calibration_frames]).encode())
        for key in sorted(self.moments):
            moments = self.moments[key]
            digest.update(f"{key}:{moments.count}".encode())
            digest.update(moments.sum.detach().cpu().numpy().tobytes())
            digest.update(torch.diagonal(moments.outer).detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        """Write one safetensors file (float64 sums as tensors, the rest as JSON metadata), atomically.

        The file appears complete or not at all: it is written beside `path` and renamed.
        """

        tensors: dict[str, Tensor] = {}
        sites = []
        for (layer, target, side), moments in self.moments.items():
            prefix = _tensor_prefix(layer, target, side)
            tensors[f"{prefix}.sum"] = moments.sum.detach().cpu().contiguous()
            tensors[f"{prefix}.outer"] = moments.symmetrize().outer.detach().cpu().contiguous()
            sites.append({"layer": layer, "target": target, "side": side, "count": moments.count})
        header = {
            "format": _FORMAT,
            "version": _VERSION,
            "signature": asdict(self.signature),
            "exclude_padding": self.exclude_padding,
            "calibration_clips": self.calibration_clips,
            "calibration_frames": self.calibration_frames,
            "sites": sites,
            "precision": self.precision,
        }
        with atomic_file(path) as temporary:
            save_file(tensors, str(temporary), metadata={_METADATA_KEY: json.dumps(header)})

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> CalibrationStatistics:
        """Read a file written by `save`; a truncated or corrupt file raises ValueError saying so."""

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: statistics file not found")
        unreadable = (f"{path}: not a readable statistics file (truncated or corrupt: {{}}); "
                      "delete it and calibrate again")
        try:
            with safe_open(str(path), framework="pt", device=str(device)) as file:
                raw = (file.metadata() or {}).get(_METADATA_KEY)
                if raw is None:
                    raise ValueError(f"{path}: not a lite-whisper statistics file (no {_METADATA_KEY!r} metadata)")
                header: dict[str, Any] = json.loads(raw)
                if header.get("format") != _FORMAT or header.get("version") not in _READABLE_VERSIONS:
                    raise ValueError(
                        f"{path}: unsupported statistics format {header.get('format')!r} "
                        f"version {header.get('version')!r} (this version reads {_FORMAT!r} versions "
                        f"{', '.join(map(str, _READABLE_VERSIONS))})"
                    )
                moments = {}
                for site in header["sites"]:
                    prefix = _tensor_prefix(site["layer"], site["target"], site["side"])
                    moments[(site["layer"], site["target"], site["side"])] = Moments(
                        count=site["count"],
                        sum=file.get_tensor(f"{prefix}.sum"),
                        outer=file.get_tensor(f"{prefix}.outer"),
                    )
            signature = ModelSignature(**header["signature"])
            return cls(
                signature=signature,
                exclude_padding=header["exclude_padding"],
                calibration_clips=header["calibration_clips"],
                calibration_frames=header["calibration_frames"],
                moments=moments,
                precision=header.get("precision", {}),
            )
        except SafetensorError as error:
            raise ValueError(unreadable.format(error)) from None
        except (KeyError, TypeError, json.JSONDecodeError) as error:
            raise ValueError(unreadable.format(f"bad header: {type(error).__name__} {error}")) from None


def _tensor_prefix(layer: int, target: str, side: str) -> str:
    return f"layers.{layer}.{target}.{side}"
