"""What optimum declares for Whisper's ONNX export, beside what an `export --format optimum` folder holds.

    python optimum_declares.py FOLDER  ->  JSON {"declared": {...}, "folder": {...}} on stdout
Each side maps "encoder" and "decoder_merged" to {"inputs": {name: {axis: axis name}}, "outputs": ...}: optimum's
from its WhisperOnnxConfig (the encoder; the decoder with past in its inputs, merged), the folder's from
its ONNX files (dynamic axes only). Runs in .venv-optimum (scripts/setup_consumers.sh).
"""

import json
import sys
from pathlib import Path

import onnx
from optimum.exporters.onnx.base import ConfigBehavior
from optimum.exporters.onnx.model_configs import WhisperOnnxConfig
from transformers import AutoConfig

folder = Path(sys.argv[1])
config = AutoConfig.from_pretrained(folder)


def declared(behavior, **kwargs) -> dict:
    onnx_config = WhisperOnnxConfig(config, task="automatic-speech-recognition", behavior=behavior, **kwargs)
    if behavior is ConfigBehavior.DECODER:
        onnx_config.is_merged = True
    inputs = onnx_config.inputs
    renames = onnx_config.torch_to_onnx_input_map
    return {"inputs": {renames.get(name, name): {str(k): v for k, v in axes.items()} for name, axes in inputs.items()},
            "outputs": {name: {str(k): v for k, v in axes.items()} for name, axes in onnx_config.outputs.items()}}


def held(path: Path) -> dict:
    graph = onnx.load(str(path), load_external_data=False).graph

    def axes(value):
        return {str(i): d.dim_param for i, d in enumerate(value.type.tensor_type.shape.dim) if d.dim_param}

    return {"inputs": {v.name: axes(v) for v in graph.input}, "outputs": {v.name: axes(v) for v in graph.output}}


print(json.dumps({
    "declared": {"encoder": declared(ConfigBehavior.ENCODER),
                 "decoder_merged": declared(ConfigBehavior.DECODER, use_past=True, use_past_in_inputs=True)},
    "folder": {"encoder": held(folder / "onnx" / "encoder_model.onnx"),
               "decoder_merged": held(folder / "onnx" / "decoder_model_merged.onnx")},
}))
