"""Deployment: export a model to ONNX (encoder) + CTranslate2 (decoder), and run the result.

The encoder runs on ONNX Runtime (float32, int8) or OpenVINO (bfloat16): `deploy.encoders`.
Needs the `deploy` extra (onnx, onnxruntime, onnxscript, openvino, ctranslate2, faster-whisper).
"""
