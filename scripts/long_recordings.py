"""Long recordings from short clips, with their references: what long-form transcription is measured on.

Clips of the given splits are joined in list order into recordings of at least --minutes each, with 0.5-3 s
between clips of silence or low noise (seeded), and written outside the repository:

    DIR/recording-00.flac ...   16 kHz mono
    DIR/recordings.tsv          path, text (the clips' references joined): a manifest `lite-whisper eval` reads
    DIR/recordings.json         which clips, and where each begins, per recording

    python scripts/long_recordings.py -o /tmp/long --splits dev calibration --minutes 5
    lite-whisper eval runs/tiny.en-lite-export --data /tmp/long/recordings.tsv
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from lite_whisper.data.audio import SAMPLE_RATE
from lite_whisper.data.datasets import default_speech_dir, load_dataset


def gap(rng: np.random.Generator) -> np.ndarray:
    """0.5-3 s of digital silence, or of noise 40-60 dB below full scale (half the gaps each)."""
    samples = int(rng.uniform(0.5, 3.0) * SAMPLE_RATE)
    if rng.random() < 0.5:
        return np.zeros(samples, np.float32)
    return (10 ** (-rng.uniform(40, 60) / 20) * rng.standard_normal(samples)).astype(np.float32)


def build(splits: list[Path], minutes: float, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    recordings, current = [], None
    for split in splits:
        for clip in load_dataset(split):
            if clip.reference is None:
                continue
            if current is None:
                current = {"audio": [], "clips": [], "texts": [], "seconds": 0.0}
            elif current["audio"]:
                current["audio"].append(gap(rng))
                current["seconds"] += len(current["audio"][-1]) / SAMPLE_RATE
            current["clips"].append({"id": clip.id, "split": split.name, "start": round(current["seconds"], 3)})
            current["audio"].append(clip.audio)
            current["texts"].append(clip.reference)
            current["seconds"] += len(clip.audio) / SAMPLE_RATE
            if current["seconds"] >= minutes * 60:
                recordings.append(current)
                current = None
    if current is not None and current["seconds"] >= minutes * 60 / 2:  # a last recording of at least half length
        recordings.append(current)
    return recordings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for the recordings (created)")
    parser.add_argument("--splits", nargs="+", default=["dev"], help="splits of the speech folder (default: dev)")
    parser.add_argument("--minutes", type=float, default=5.0, help="length of each recording at least (default: 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speech-dir", type=Path, default=None, help="default: $LITE_WHISPER_SPEECH or ../shared/speech")
    args = parser.parse_args(argv)
    if args.output.exists() and any(args.output.iterdir()):
        print(f"{args.output} is not empty; choose a new folder", file=sys.stderr)
        return 2
    speech = args.speech_dir or default_speech_dir()
    splits = [speech / "splits" / f"{name}.txt" for name in args.splits]
    recordings = build(splits, args.minutes, args.seed)
    args.output.mkdir(parents=True, exist_ok=True)
    rows, details = [], []
    for index, recording in enumerate(recordings):
        name = f"recording-{index:02d}.flac"
        sf.write(args.output / name, np.concatenate(recording["audio"]), SAMPLE_RATE, subtype="PCM_16")
        rows.append({"path": name, "text": " ".join(recording["texts"])})
        details.append({"path": name, "seconds": round(recording["seconds"], 2), "clips": recording["clips"]})
        print(f"{name}: {recording['seconds'] / 60:.1f} min, {len(recording['clips'])} clips", file=sys.stderr)
    with (args.output / "recordings.tsv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "text"], delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    (args.output / "recordings.json").write_text(json.dumps(details, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
