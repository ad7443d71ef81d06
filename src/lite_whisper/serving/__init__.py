"""Serving over HTTP: OpenAI's audio API in front of one engine, windows batched across requests."""
