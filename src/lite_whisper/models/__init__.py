"""PyTorch Whisper models from any spec (short names, Hugging Face and CTranslate2 folders, hub ids), and
random-weight models of the real architectures for timing."""
