"""Which engine runs an exported encoder: ONNX Runtime (float32, int8) or OpenVINO (bfloat16).

    float32    encoder.onnx on ONNX Runtime: the reference (within 1e-4 of PyTorch)
    int8       encoder.int8.onnx on ONNX Runtime (written by `export --int8`): int8 weights and
               dynamic int8 activations, clip by clip
    bfloat16   encoder.onnx on OpenVINO in bfloat16: only on CPUs with native bfloat16 (AMX,
               AVX512_BF16); the fastest there and more accurate than int8
    auto       bfloat16 where this CPU and an installed OpenVINO support it, else the export's
               default (int8 when it has one). Chosen when the folder is loaded, not when it is
               written, since an exported folder moves between machines.
"""

from __future__ import annotations

from pathlib import Path

ENCODER_KINDS = ("auto", "float32", "int8", "bfloat16")
ENGINES = {"float32": "onnxruntime", "int8": "onnxruntime", "bfloat16": "openvino"}  # kind -> engine


class EncoderUnavailableError(ValueError):
    """The encoder asked for cannot run here (not exported, or no engine for it)."""


# why an encoder the user asked for is not in runnable_encoders()
UNAVAILABLE = {
    "int8": "this folder was exported without an int8 encoder (lite-whisper export --int8); "
            "choose --encoder float32 or bfloat16",
    "bfloat16": "the bfloat16 encoder needs OpenVINO (pip install 'lite-whisper[deploy]') and a CPU with native "
                "bfloat16 (AMX or AVX512_BF16); choose --encoder int8 or float32",
}


def choose_encoder(manifest: dict, kind: str | None = "auto") -> str:
    """The encoder kind to run for `kind` ('auto' or None: see the module's docstring)."""
    kind = kind or "auto"
    if kind not in ENCODER_KINDS:
        raise EncoderUnavailableError(f"unknown encoder {kind!r}; choose one of {', '.join(ENCODER_KINDS)}")
    runnable = runnable_encoders(manifest)
    if kind == "auto":
        return "bfloat16" if "bfloat16" in runnable else manifest["encoder"]["default"]
    if kind not in runnable:
        raise EncoderUnavailableError(UNAVAILABLE[kind])
    return kind


def runnable_encoders(manifest: dict) -> dict[str, str]:
    """{kind: engine} for every encoder of an exported folder that can run on this machine."""
    # The engines are imported only when asked about: the command line reads ENCODER_KINDS for its help.
    from lite_whisper.runtime.openvino_encoder import bfloat16_supported

    available = {"float32": True, "int8": manifest["encoder"].get("int8") is not None,
                 "bfloat16": bfloat16_supported()}
    return {kind: engine for kind, engine in ENGINES.items() if available[kind]}


def open_encoder(folder: str | Path, manifest: dict, kind: str, threads: int | None = None):
    """A callable encoder (features -> states) of `kind` (one `choose_encoder` returned) for an exported folder."""
    folder = Path(folder)
    if ENGINES[kind] == "openvino":  # bfloat16 from the float32 graph: no file of its own
        from lite_whisper.runtime.openvino_encoder import OpenVinoEncoder

        return OpenVinoEncoder(folder / manifest["encoder"]["float32"], threads=threads, precision="bf16")
    from lite_whisper.runtime.onnx_encoder import OnnxEncoder

    return OnnxEncoder(folder / manifest["encoder"][kind], threads=threads)
