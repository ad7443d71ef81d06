"""Greedy decoding over an optimum-layout folder with ONNX Runtime: the export's own parity check.

What optimum's `ORTModelForSpeechSeq2Seq` and transformers.js do with the folder, reduced to the
loop: the encoder once, then the merged decoder with `use_cache_branch` false on the first step
(an empty cache) and true after, Whisper's suppressed tokens masked, until end of text.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

# optimum's names for the merged decoder's inputs and outputs (deploy.onnx_decoder writes them)
INPUT_IDS, ENCODER_STATES, USE_CACHE = "input_ids", "encoder_hidden_states", "use_cache_branch"
LOGITS = "logits"
ONNX_FOLDER = "onnx"
ENCODER_FILE, DECODER_FILE = "encoder_model", "decoder_model_merged"
QUANTIZED_SUFFIX = "_quantized"  # transformers.js's name for its q8 variant


def onnx_file(folder: str | Path, part: str, quantized: bool = False) -> Path:
    return Path(folder) / ONNX_FOLDER / f"{part}{QUANTIZED_SUFFIX if quantized else ''}.onnx"


class OptimumOnnxWhisper:
    """The folder's encoder and merged decoder in ONNX Runtime sessions (float32 or the `_quantized` pair)."""

    def __init__(self, folder: str | Path, quantized: bool = False, threads: int | None = None):
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.encoder = ort.InferenceSession(str(onnx_file(folder, ENCODER_FILE, quantized)), options,
                                            providers=["CPUExecutionProvider"])
        self.decoder = ort.InferenceSession(str(onnx_file(folder, DECODER_FILE, quantized)), options,
                                            providers=["CPUExecutionProvider"])
        self.cache_inputs = [i for i in self.decoder.get_inputs() if i.name.startswith("past_key_values.")]
        generation = json.loads((Path(folder) / "generation_config.json").read_text())
        self.suppress = list(generation.get("suppress_tokens") or [])
        self.begin_suppress = list(generation.get("begin_suppress_tokens") or [])
        self.eos = generation["eos_token_id"]
        self.max_length = generation.get("max_length") or 448

    def generate(self, features: np.ndarray, prompt: list[int], max_new_tokens: int | None = None) -> list[list[int]]:
        """Greedy token ids after `prompt` for each log-mel window of `features` (batch, mels, frames), end of
        text excluded."""
        states = self.encoder.run(None, {"input_features": features.astype(np.float32)})[0]
        batch = states.shape[0]
        ids = np.tile(np.asarray(prompt, dtype=np.int64), (batch, 1))
        feed = {INPUT_IDS: ids, ENCODER_STATES: states, USE_CACHE: np.array([False])}
        for item in self.cache_inputs:  # the first step's cache is empty (and unread)
            feed[item.name] = np.zeros((batch, item.shape[1], 0, item.shape[3]), np.float32)
        names = [o.name for o in self.decoder.get_outputs()]
        limit = min(max_new_tokens or self.max_length, self.max_length - len(prompt))
        tokens, done = [[] for _ in range(batch)], np.zeros(batch, bool)
        for step in range(limit):
            outputs = dict(zip(names, self.decoder.run(None, feed)))
            logits = outputs[LOGITS][:, -1]
            logits[:, self.suppress] = -np.inf
            if step == 0:
                logits[:, self.begin_suppress] = -np.inf
            chosen = logits.argmax(-1)
            for b in np.flatnonzero(~done):
                if chosen[b] == self.eos:
                    done[b] = True
                else:
                    tokens[b].append(int(chosen[b]))
            if done.all():
                break
            feed = {INPUT_IDS: np.where(done, self.eos, chosen)[:, None].astype(np.int64), ENCODER_STATES: states,
                    USE_CACHE: np.array([True])}
            for name, value in outputs.items():
                if name.startswith("present."):
                    feed[name.replace("present", "past_key_values", 1)] = value
        return tokens
