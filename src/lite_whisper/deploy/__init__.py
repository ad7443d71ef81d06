"""Deployment: export a model to ONNX Runtime (encoder) + CTranslate2 (decoder), and run the result.

Needs the `deploy` extra (onnx, onnxruntime, onnxscript, ctranslate2, faster-whisper).
"""
