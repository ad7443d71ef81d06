"""The hybrid engine: PyTorch encodes (replayed from CUDA graphs on a GPU), CTranslate2 decodes.

On a GPU, transformers' `generate` spends its time on the host (GPU.md: 100 tokens of a
large-v3-turbo decoder take 353 ms at batch 1, while the encoder takes 13), so an encoder
compressed 1.7x changes nothing a user sees. CTranslate2's decoder (faster-whisper's GPU
engine: float16 or int8_float16, C++ decoding loop) is fed the PyTorch encoder's states directly:
a CUDA tensor goes to CTranslate2 through the CUDA array interface, no copy through the host,
exactly as the CPU export hands ONNX Runtime's output to the same decoder
(`ct2_decoding.CTranslate2Decoding`). The decoder is the model's own (dense; only encoders are
compressed), converted once when the engine is made, with a placeholder encoder that never runs
(`models.ctranslate2.decoder`).

Everything but decoding (and word alignment, CTranslate2's) is a `PyTorchEngine`'s: features, the
encoder, and the sequential long form (transformers' pipeline).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence

import ctranslate2
import numpy as np
import torch

from lite_whisper.models.ctranslate2.decoder import write_decoder
from lite_whisper.runtime.ct2_decoding import CTranslate2Decoding
from lite_whisper.runtime.pytorch import PyTorchEngine
from lite_whisper.transcription.types import DecodingOptions, Transcription

DEFAULT_DECODER_TYPES = {"cuda": "float16", "cpu": "float32"}  # CTranslate2 compute types


class HybridEngine(CTranslate2Decoding):
    """`model` (a transformers Whisper model, dense or lite, on its device and dtype) with its `processor`.

    `encoder_mode`: `fast_encoder.ENCODER_MODES` (auto: graphed on CUDA). `decoder_type`: CTranslate2's
    compute type (default float16 on CUDA, float32 on the CPU; int8_float16 / int8 to quantise).
    """

    def __init__(self, model, processor, *, encoder_mode: str = "auto", decoder_type: str | None = None,
                 threads: int = 0, name: str | None = None):
        # features, the encoder (graphed on CUDA, the fast CPU route for a lite model on the CPU) and long clips
        # are the PyTorch engine's; only decoding differs
        self.pytorch = PyTorchEngine(model, processor, name=name, encoder_mode=encoder_mode)
        self.model, self.processor, self.name = model, processor, self.pytorch.name
        self.tokenizer, self.generation_config = self.pytorch.tokenizer, self.pytorch.generation_config
        device = self.device
        self.decoder_type = decoder_type or DEFAULT_DECODER_TYPES.get(device.type, "float32")
        with tempfile.TemporaryDirectory(prefix="lite-whisper-decoder-") as scratch:
            folder = write_decoder(model, processor, scratch, quantization=self.decoder_type)
            self.decoder = ctranslate2.models.Whisper(
                str(folder), device=device.type, device_index=device.index or 0, compute_type=self.decoder_type,
                intra_threads=threads)  # loaded into memory: the folder can go

    def __repr__(self) -> str:
        return (f"HybridEngine({self.name!r}, encoder {self.pytorch.encoder!r}, "
                f"CTranslate2 {self.decoder_type} decoder)")

    @property
    def device(self) -> torch.device:
        return self.pytorch.device

    def synchronize(self) -> None:
        self.pytorch.synchronize()

    def features(self, clips: Sequence[np.ndarray]) -> torch.Tensor:
        return self.pytorch.features(clips)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        return self.pytorch.encode(features).states

    def take(self, encoded: torch.Tensor, indices: Sequence[int]) -> torch.Tensor:
        return encoded[torch.as_tensor(list(indices), dtype=torch.long, device=encoded.device)]

    def storage(self, encoded: torch.Tensor) -> ctranslate2.StorageView:
        """The states as CTranslate2 reads them: float16/float32 (it converts to its compute type itself)."""
        if encoded.device.type == "cuda":
            states = encoded.contiguous() if encoded.dtype in (torch.float16, torch.float32) else encoded.float()
            # CTranslate2 reads on its own stream: the encoder's kernels must be done. `decode` keeps `encoded`
            # (hence the memory) alive until generate returns.
            torch.cuda.current_stream(encoded.device).synchronize()
            return ctranslate2.StorageView.from_array(states)
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(encoded.float().numpy()))

    def transcribe_long(self, name: str, samples: np.ndarray, options: DecodingOptions) -> Transcription:
        return self.pytorch.transcribe_long(name, samples, options)
