"""The engines that run a model: PyTorch (`pytorch`, with the fast CPU route `cpu_route`) and an exported
folder (`exported`: ONNX Runtime / OpenVINO encoder sessions, the CTranslate2 decoder, faster-whisper)."""
