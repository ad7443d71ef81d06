"""Word start times: lite-whisper's against faster-whisper's `word_timestamps=True` on the same dense model.

lite-whisper runs MODEL (an export, or a PyTorch model with the CTranslate2 decoder), faster-whisper runs DENSE
converted to CTranslate2 int8; words are paired where both wrote the same word (difflib over the words without
punctuation), and the median |start difference| is printed:

    python scripts/word_timestamps_study.py runs/tiny.en-export tiny.en --data ../shared/speech/splits/dev.txt --limit 30
"""

from __future__ import annotations

import argparse
import difflib
import sys
import tempfile
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="what lite-whisper runs")
    parser.add_argument("dense", help="the dense model faster-whisper runs (converted to CTranslate2 int8)")
    parser.add_argument("--data", default="../shared/speech/splits/dev.txt")
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from faster_whisper import WhisperModel

    from lite_whisper.api import load_engine, load_model
    from lite_whisper.data.datasets import load_dataset
    from lite_whisper.models.ctranslate2.decoder import convert_to_ctranslate2
    from lite_whisper.transcription.engine import transcribe_clips
    from lite_whisper.transcription.types import DecodingOptions

    clips = [(clip.id, clip.audio) for clip in load_dataset(args.data, limit=args.limit)]
    engine = load_engine(args.model, threads=args.threads)  # every engine aligns words
    ours = list(transcribe_clips(engine, clips, options=DecodingOptions(language="en", timestamps=True,
                                                                         word_timestamps=True)))
    model, processor = load_model(args.dense)
    differences, total, inside = [], 0, True
    bare = lambda words: [w.word.strip(" .,!?;:\"'").lower() for w in words]  # noqa: E731
    with tempfile.TemporaryDirectory() as scratch:
        folder = convert_to_ctranslate2(model, processor, Path(scratch) / "ct2", quantization="int8")
        faster = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=args.threads)
        for (_, audio), result in zip(clips, ours):
            segments, _ = faster.transcribe(audio, beam_size=1, word_timestamps=True, condition_on_previous_text=False)
            theirs = [word for segment in segments for word in segment.words]
            total += len(result.words)
            inside &= all(0 <= w.start <= w.end <= result.seconds for w in result.words)
            matcher = difflib.SequenceMatcher(a=bare(result.words), b=bare(theirs), autojunk=False)
            for block in matcher.get_matching_blocks():
                differences += [abs(result.words[block.a + k].start - theirs[block.b + k].start)
                                for k in range(block.size)]
    d = np.array(differences)
    print(f"{len(d)} of {total} words paired; |start difference| median {np.median(d):.3f} s, mean {d.mean():.3f}, "
          f"p90 {np.percentile(d, 90):.3f}, max {d.max():.2f}; every word inside its clip: {inside}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
