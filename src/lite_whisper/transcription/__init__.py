"""What transcription is, for every engine: options and results (`types`), Whisper's decoding rules
(`policy`), and the engine protocol with the loop that drives any engine (`engine`)."""
