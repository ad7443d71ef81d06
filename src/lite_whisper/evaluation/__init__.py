"""Evaluation: transcribe a dataset through any engine and score it (corpus and per-utterance WER)."""
