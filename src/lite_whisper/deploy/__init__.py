"""Building an exported folder: the encoder as ONNX (`onnx_graph`), int8 weights (`int8`, `smoothing`), the
decoder for CTranslate2 (`models.ctranslate2.decoder`, which the GPU engine uses too), parity checks and the manifest (`export`). Running one is
`lite_whisper.runtime.exported`. Needs the `deploy` extra (onnx, onnxruntime, onnxscript, openvino,
ctranslate2, faster-whisper)."""
