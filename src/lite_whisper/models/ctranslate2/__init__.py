"""CTranslate2 / faster-whisper folders: the `model.bin` format, its tokenizer, conversion to transformers; and
the other way, a model's decoder written as a CTranslate2 folder (`decoder`: imported on its own, it needs
the `deploy` extra's ctranslate2)."""

from lite_whisper.models.ctranslate2.convert import ctranslate2_to_transformers, transformers_state_dict, whisper_config
from lite_whisper.models.ctranslate2.format import (
    MODEL_BIN,
    CT2Model,
    find_model_bin,
    is_ctranslate2_folder,
    read_model_bin,
)
from lite_whisper.models.ctranslate2.tokenizer import build_tokenizer, generation_config

__all__ = [
    "MODEL_BIN", "CT2Model", "build_tokenizer", "ctranslate2_to_transformers", "find_model_bin",
    "generation_config", "is_ctranslate2_folder", "read_model_bin", "transformers_state_dict", "whisper_config",
]
