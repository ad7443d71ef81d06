"""Does compressing a multilingual Whisper on English audio cost it other languages?

For each model and each language folder of a set written by `scripts/synthesize_multilingual.py`:
transcription WER with the language given (Whisper's basic normaliser), language identification
accuracy (Whisper's own detection on the first window), and translation to English scored by
corpus BLEU-4 against the English sentence (one reference, words after Whisper's English
normaliser; comparable between models, not with published BLEU).
Transcription and translation run through a float32 export of each model (ONNX Runtime encoder,
CTranslate2 decoder: the same transcripts as PyTorch, several times faster; cached under
OUT/exports), language identification through the PyTorch model. Results are cached per model
under OUT; the table gives each model's ratio to the first one.

    python scripts/multilingual_study.py --data ~/speech-multilingual -o runs/multilingual-base \
        --model dense=base --model allocate-75=runs/base-75

The speech is SYNTHETIC (text-to-speech); say so wherever its numbers appear.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path

import torch

from lite_whisper.api import load_engine
from lite_whisper.data.datasets import load_dataset
from lite_whisper.deploy.export import export
from lite_whisper.data.features import feature_batches
from lite_whisper.evaluation.evaluate import evaluate
from lite_whisper.evaluation.wer import normalize
from lite_whisper.models.loading import load_pytorch_model
from lite_whisper.transcription.types import DecodingOptions


def language_accuracy(model, processor, dataset, language: str) -> dict:
    """Share of clips whose detected language is `language`, and what was detected instead."""
    id_to_language = {index: token.strip("<|>") for token, index in model.generation_config.lang_to_id.items()}
    detected: list[str] = []
    with torch.inference_mode():
        for features, _ in feature_batches(dataset, processor, 8, model.device, model.dtype, []):
            ids = model.detect_language(input_features=features, generation_config=model.generation_config)
            detected += [id_to_language[int(index)] for index in ids.reshape(-1)]
    others: dict[str, int] = {}
    for code in detected:
        if code != language:
            others[code] = others.get(code, 0) + 1
    return {"accuracy": 100.0 * detected.count(language) / len(detected), "clips": len(detected), "instead": others}


def bleu(pairs: list[tuple[str, str]], order: int = 4) -> float:
    """Corpus BLEU (Papineni et al.): geometric mean of clipped 1..4-gram precisions times the brevity penalty."""
    matched, total = [0] * order, [0] * order
    reference_length = hypothesis_length = 0
    for reference, hypothesis in pairs:
        ref, hyp = normalize(reference).split(), normalize(hypothesis).split()
        reference_length += len(ref)
        hypothesis_length += len(hyp)
        for n in range(1, order + 1):
            ref_counts = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
            hyp_counts = Counter(tuple(hyp[i:i + n]) for i in range(len(hyp) - n + 1))
            matched[n - 1] += sum(min(count, ref_counts[gram]) for gram, count in hyp_counts.items())
            total[n - 1] += max(len(hyp) - n + 1, 0)
    if not hypothesis_length or not all(matched):
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matched, total)) / order
    brevity = min(0.0, 1.0 - reference_length / hypothesis_length)
    return 100.0 * math.exp(log_precision + brevity)


def study(name: str, spec: str, data: Path, languages: list[str], out: Path, max_new_tokens: int) -> dict:
    path = out / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    model, processor = load_pytorch_model(spec, dtype="float32")
    exported = out / "exports" / name
    if not (exported / "lite_whisper_export.json").exists():
        export(model, processor, exported, source=spec, decoder_quantization="float32", threads=2, overwrite=True,
               log=print)
    engine = load_engine(exported, encoder="float32")
    results = {}
    for language in languages:
        native = load_dataset(str(data / language))
        transcribed = evaluate(engine, native, label=f"{name} {language}",
                               options=DecodingOptions(language=language, max_new_tokens=max_new_tokens))
        translated = evaluate(engine, str(data / f"{language}-to-en.tsv"), label=f"{name} {language}->en",
                              options=DecodingOptions(language=language, task="translate",
                                                      max_new_tokens=max_new_tokens))
        results[language] = {
            "wer": transcribed.wer, "loops": transcribed.loops,
            "translation_bleu": bleu([(u.reference, u.hypothesis) for u in translated.utterances]),
            "translation_loops": translated.loops,
            "translations": [u.hypothesis for u in translated.utterances],
            "language_id": language_accuracy(model, processor, native, language),
            "hypotheses": [u.hypothesis for u in transcribed.utterances],
        }
        print(f"{name} {language}: WER {transcribed.wer:.2f}, language id "
              f"{results[language]['language_id']['accuracy']:.1f}%, translation BLEU {results[language]['translation_bleu']:.1f}",
              file=sys.stderr)
    entry = {"model": spec, "languages": results}
    path.write_text(json.dumps(entry, indent=2, ensure_ascii=False) + "\n")
    return entry


def table(entries: dict[str, dict], languages: list[str]) -> str:
    names = list(entries)
    base = entries[names[0]]["languages"]
    lines = [f"{'language':<9} " + " ".join(f"{n[:18]:>26}" for n in names),
             f"{'':<9} " + " ".join(f"{'WER (x)    id%   BLEU':>26}" for _ in names)]
    for language in languages:
        cells = []
        for name in names:
            r = entries[name]["languages"][language]
            ratio = r["wer"] / base[language]["wer"] if base[language]["wer"] else float("nan")
            cells.append(f"{r['wer']:6.2f} ({ratio:4.2f}) {r['language_id']['accuracy']:5.1f} "
                         f"{r['translation_bleu']:6.1f}")
        lines.append(f"{language:<9} " + " ".join(f"{c:>26}" for c in cells))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--model", action="append", required=True, help="NAME=SPEC; the first is the reference")
    parser.add_argument("--languages", help="comma-separated (default: every language in the set)")
    parser.add_argument("--max-new-tokens", type=int, default=120)
    args = parser.parse_args()
    manifest = json.loads((args.data / "multilingual.json").read_text())
    languages = args.languages.split(",") if args.languages else list(manifest["languages"])
    args.output.mkdir(parents=True, exist_ok=True)
    entries = {}
    for item in args.model:
        name, _, spec = item.partition("=")
        entries[name] = study(name, spec, args.data, languages, args.output, args.max_new_tokens)
    text = "SYNTHETIC speech (text-to-speech): " + manifest["note"] + "\n" + table(entries, languages)
    (args.output / "table.txt").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
