"""Harder evaluation sets made from a clean one: every clip degraded by every variant, written once.

`build_variants` writes ROOT/VARIANT/NNNN.flac with a `transcripts.tsv` per variant (each variant
folder is a dataset spec of its own) and ROOT/variants.json, the manifest: source, seed, variants
and what was measured (the SNR actually reached, lengths). `variant_folders(ROOT)` reads it back,
so `eval --data ROOT` evaluates every variant.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soundfile as sf

from lite_whisper.data.audio import SAMPLE_RATE
from lite_whisper.data.augment import BABBLE_TALKERS, NOISES, Variant, power, rng_for
from lite_whisper.data.datasets import DatasetError, SpeechDataset
from lite_whisper.files import atomic_folder
from lite_whisper.progress import ProgressBar

MANIFEST = "variants.json"
FORMAT = "lite-whisper-variants"


def build_variants(dataset: SpeechDataset, variants: Sequence[Variant], output: str | Path, *, seed: int = 0,
                   overwrite: bool = False, progress: bool = True) -> dict:
    """Write every clip of `dataset` degraded by every variant under `output`; return the manifest.

    The whole dataset is held in memory while writing (babble mixes other clips of it; an hour of
    16 kHz audio is 230 MB). Babble talkers are chosen from the other clips by the seed and the
    clip's id. Clips without a reference are kept (their transcript cell is empty).
    """
    clips = list(dataset)
    if len(clips) < 2 and any(variant.kind == "babble" for variant in variants):
        raise DatasetError(f"{dataset.spec}: babble mixes other clips of the dataset; it needs at least 2 clips")
    names = [variant.name for variant in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variants named twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    entries = []
    bar = ProgressBar(total=len(clips) * len(variants), desc="degrading", unit="clip", disable=not progress)
    with atomic_folder(output, overwrite=overwrite) as staging:
        for variant in variants:
            folder = staging / variant.name
            folder.mkdir()
            rows, snrs, seconds = [], [], 0.0
            for index, clip in enumerate(clips):
                rng = rng_for(seed, variant.name, clip.id)
                talkers = _talkers(clips, index, seed, variant) if variant.kind == "babble" else ()
                degraded = variant.apply(clip.audio, rng, talkers)
                if variant.kind in NOISES:
                    snrs.append(_measured_snr(clip.audio, degraded))
                name = f"{index:04d}.flac"
                sf.write(folder / name, degraded, SAMPLE_RATE, subtype="PCM_16")
                rows.append((name, clip.reference or "", clip.id))
                seconds += len(degraded) / SAMPLE_RATE
                bar.update(1)
            with (folder / "transcripts.tsv").open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\",
                                    lineterminator="\n")
                writer.writerow(("file", "transcript", "source"))
                writer.writerows(rows)
            entry = {"name": variant.name, **{k: v for k, v in asdict(variant).items() if v is not None},
                     "folder": variant.name, "clips": len(clips), "seconds": round(seconds, 2)}
            if snrs:
                entry["measured_snr_db"] = {"min": round(min(snrs), 3), "max": round(max(snrs), 3)}
            entries.append(entry)
        manifest = {"format": FORMAT, "version": 1, "source": dataset.spec, "clips": len(clips), "seed": seed,
                    "babble_talkers": BABBLE_TALKERS, "variants": entries}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    bar.close()
    return manifest


def _talkers(clips, index: int, seed: int, variant: Variant) -> list[np.ndarray]:
    """`BABBLE_TALKERS` other clips of the dataset (never the clip itself), fixed by the seed and clip id."""
    others = [position for position in range(len(clips)) if position != index]
    rng = rng_for(seed, variant.name, "talkers", clips[index].id)
    picked = rng.choice(len(others), size=min(BABBLE_TALKERS, len(others)), replace=False)
    return [clips[others[position]].audio for position in sorted(picked)]


def _measured_snr(clean: np.ndarray, mixed: np.ndarray) -> float:
    """The SNR of a mix as written (after any anti-clipping scale, which keeps the ratio)."""
    scale = float(np.dot(mixed.astype(np.float64), clean) / max(np.dot(clean.astype(np.float64), clean), 1e-30))
    noise = mixed.astype(np.float64) - scale * clean
    return 10.0 * np.log10(power(scale * clean) / max(power(noise), 1e-30))


def is_variants_root(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def variant_folders(root: str | Path) -> list[tuple[str, Path]]:
    """(variant name, folder) of every variant under a root written by `build_variants`, in manifest order."""
    root = Path(root)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetError(f"{root / MANIFEST}: cannot read the variants manifest ({error})") from None
    if manifest.get("format") != FORMAT:
        raise DatasetError(f"{root / MANIFEST}: not a lite-whisper variants manifest")
    folders = []
    for entry in manifest.get("variants", []):
        folder = root / entry["folder"]
        if not (folder / "transcripts.tsv").is_file():
            raise DatasetError(f"{folder}: variant {entry['name']} is missing (its transcripts.tsv is not there)")
        folders.append((entry["name"], folder))
    return folders
