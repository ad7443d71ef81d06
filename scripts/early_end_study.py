"""Why transcripts end early: the same clips decoded by several models, with and without Whisper's timestamp mode.

base stops after a chapter heading ("CHAPTER XII", then end of text) on some LibriSpeech clips; this prints, for
every clip whose reference starts with a given word (or every clip named), the words decoded against the
reference's, the WER and whether the transcript is cut short (`evaluation.loops.is_cut_short`), greedy, once
without timestamps (how `eval` decodes) and once with them (Whisper's default transcription mode):

    python scripts/early_end_study.py --model base --model runs/study-base/models/default --starts-with CHAPTER
"""

from __future__ import annotations

import argparse
import json
import sys

from lite_whisper.api import load_engine
from lite_whisper.data.datasets import load_dataset
from lite_whisper.evaluation.loops import is_cut_short
from lite_whisper.evaluation.wer import normalize, word_errors
from lite_whisper.transcription.engine import transcribe_clips
from lite_whisper.transcription.types import DecodingOptions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="a model spec (give several)")
    parser.add_argument("--data", default="../shared/speech/splits/dev.txt")
    parser.add_argument("--starts-with", help="only clips whose reference starts with this word")
    parser.add_argument("--ids", help="only these clip ids (comma-separated)")
    parser.add_argument("--output", help="write every row as JSON here")
    args = parser.parse_args()
    ids = set(args.ids.split(",")) if args.ids else None
    clips = [clip for clip in load_dataset(args.data) if clip.reference is not None
             and (ids is None or clip.id in ids)
             and (args.starts_with is None or clip.reference.upper().startswith(args.starts_with.upper()))]
    rows = []
    for spec in args.model:
        engine = load_engine(spec)
        for timestamps in (False, True):
            options = DecodingOptions(language="en", timestamps=timestamps, max_new_tokens=200)
            results = transcribe_clips(engine, [(clip.id, clip.audio) for clip in clips], options=options)
            for clip, result in zip(clips, results):
                hypothesis = normalize(result.text)
                errors = word_errors(normalize(clip.reference), hypothesis)
                row = {"model": spec, "timestamps": timestamps, "id": clip.id, "words": len(hypothesis.split()),
                       "reference_words": errors.reference_words, "wer": errors.wer,
                       "cut_short": is_cut_short(errors), "text": result.text}
                rows.append(row)
                print(f"{spec[-24:]:>24} timestamps={timestamps!s:5} {clip.id.rsplit('/', 1)[-1]:>18} "
                      f"words {row['words']:>3}/{row['reference_words']:<3} WER {row['wer']:6.1f} "
                      f"{'CUT SHORT' if row['cut_short'] else '':9} {result.text[:60]!r}", flush=True)
    print()
    for spec in args.model:
        for timestamps in (False, True):
            cut = [row["id"].rsplit("/", 1)[-1] for row in rows
                   if row["model"] == spec and row["timestamps"] == timestamps and row["cut_short"]]
            print(f"{spec}, timestamps {timestamps}: {len(cut)} of {len(clips)} cut short {cut}")
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(rows, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
