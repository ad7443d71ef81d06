"""Deterministic degradations of clean speech: noise at a set SNR, reverberation, telephone band, speed.

Used two ways: `lite-whisper variants` builds harder evaluation sets from a clean split (a fixed
grid of named variants), and `Augmentation` gives calibration extra copies of each clip degraded
at random settings drawn from wider ranges than the grid (so the statistics see the speech users
have, without being tuned to the evaluation's exact settings). Everything is numpy + soxr; a
seed and the clip's id fix every random draw, so results do not depend on order or sharding.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import soxr

from lite_whisper.data.audio import SAMPLE_RATE

TELEPHONE_RATE = 8_000
TELEPHONE_BAND = (300.0, 3400.0)  # Hz: the narrowband telephone channel (ITU-T G.712)
BABBLE_TALKERS = 4
SNRS = (20, 10, 5)  # dB: the evaluation grid
NOISES = ("white", "pink", "babble")
REVERB_RT60 = 0.6  # seconds: a living room / small office
SPEEDS = (0.9, 1.1)


def rng_for(seed: int, *keys: str | int) -> np.random.Generator:
    """A generator fixed by `seed` and `keys` (a variant's name, a clip's id): the same draws in any order."""
    words = [seed] + [zlib.crc32(str(key).encode()) for key in keys]
    return np.random.default_rng(words)


def power(samples: np.ndarray) -> float:
    return float(np.mean(np.square(samples, dtype=np.float64)))


def fit_length(noise: np.ndarray, length: int) -> np.ndarray:
    """`noise` repeated or cut to `length` samples."""
    if len(noise) >= length:
        return noise[:length]
    return np.tile(noise, -(-length // len(noise)))[:length]


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`speech` plus `noise` scaled so that speech power / noise power is `snr_db` over the whole clip.

    Silent speech is returned unchanged (no SNR is defined). The mix is scaled down as a whole if
    it would clip, which keeps the SNR.
    """
    noise = fit_length(np.asarray(noise, dtype=np.float64), len(speech))
    speech_power, noise_power = power(speech), power(noise)
    if speech_power == 0.0 or noise_power == 0.0:
        return np.array(speech, dtype=np.float32)
    scale = np.sqrt(speech_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return _no_clipping(speech + scale * noise)


def white_noise(length: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(length)


def pink_noise(length: int, rng: np.random.Generator) -> np.ndarray:
    """Noise with power falling as 1/f (3 dB per octave): white noise shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.arange(len(spectrum), dtype=np.float64)
    frequencies[0] = 1.0
    spectrum /= np.sqrt(frequencies)
    spectrum[0] = 0.0  # no DC offset
    return np.fft.irfft(spectrum, n=length)


def babble(length: int, talkers: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Several other talkers at once, each at unit power and a random starting point, looped to `length`."""
    mix = np.zeros(length)
    for talker in talkers:
        talker = np.asarray(talker, dtype=np.float64)
        talker_power = power(talker)
        if talker_power == 0.0:
            continue
        start = int(rng.integers(len(talker)))
        mix += fit_length(np.roll(talker, -start), length) / np.sqrt(talker_power)
    return mix


def room_impulse_response(rt60: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE,
                          direct_to_reverberant_db: float = 0.0) -> np.ndarray:
    """A synthetic room: a direct path, then exponentially decaying noise reaching -60 dB after `rt60` s.

    The tail's energy is `direct_to_reverberant_db` below the direct path's (0 dB: as much reflected
    as direct sound, a talker a few metres away).
    """
    length = max(2, int(rt60 * sample_rate))
    times = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * np.exp(-np.log(1000.0) * times / rt60)
    delay = int(0.0025 * sample_rate)  # first reflections arrive after ~2.5 ms
    tail[:delay] = 0.0
    tail *= np.sqrt(10.0 ** (-direct_to_reverberant_db / 10.0) / power(tail[delay:]) / (length - delay))
    response = tail
    response[0] = 1.0
    return response


def reverberate(samples: np.ndarray, response: np.ndarray) -> np.ndarray:
    """`samples` convolved with `response` (same length; the tail past the end is cut), at the input's power."""
    size = len(samples) + len(response) - 1
    wet = np.fft.irfft(np.fft.rfft(samples, size) * np.fft.rfft(response, size), n=size)[: len(samples)]
    wet_power = power(wet)
    if wet_power > 0.0:
        wet *= np.sqrt(power(samples) / wet_power)
    return _no_clipping(wet)


def band_pass(samples: np.ndarray, low: float, high: float, sample_rate: int) -> np.ndarray:
    """Zero every frequency outside [low, high] Hz (a brick-wall filter in the frequency domain)."""
    spectrum = np.fft.rfft(np.asarray(samples, dtype=np.float64))
    frequencies = np.fft.rfftfreq(len(samples), 1.0 / sample_rate)
    spectrum[(frequencies < low) | (frequencies > high)] = 0.0
    return np.fft.irfft(spectrum, n=len(samples))


def mu_law(samples: np.ndarray, levels: int = 256) -> np.ndarray:
    """Encode with G.711's mu-law companding to `levels` levels and decode again (the telephone codec's noise)."""
    mu = levels - 1
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    scale = 1.0 / peak if peak > 1.0 else 1.0
    x = np.clip(samples * scale, -1.0, 1.0)
    encoded = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    quantised = np.round((encoded + 1.0) / 2.0 * mu) / mu * 2.0 - 1.0
    return np.sign(quantised) * np.expm1(np.abs(quantised) * np.log1p(mu)) / mu / scale


def telephone(samples: np.ndarray) -> np.ndarray:
    """A narrowband phone call: down to 8 kHz, 300-3400 Hz, 8-bit mu-law, and back up to 16 kHz."""
    narrow = soxr.resample(np.asarray(samples, dtype=np.float32), SAMPLE_RATE, TELEPHONE_RATE, quality="HQ")
    narrow = mu_law(band_pass(narrow, *TELEPHONE_BAND, TELEPHONE_RATE))
    wide = soxr.resample(narrow.astype(np.float32), TELEPHONE_RATE, SAMPLE_RATE, quality="HQ")
    return _no_clipping(fit_length(wide, len(samples)) if len(wide) >= len(samples) else wide)


def change_speed(samples: np.ndarray, factor: float) -> np.ndarray:
    """Played `factor` times faster, pitch moving with it (sox's `speed`): len(out) = len(in) / factor."""
    return soxr.resample(np.asarray(samples, dtype=np.float32), SAMPLE_RATE * factor, SAMPLE_RATE,
                         quality="HQ").astype(np.float32)


def _no_clipping(samples: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    if peak > 0.99:
        samples = samples * (0.99 / peak)
    return np.asarray(samples, dtype=np.float32)


@dataclass(frozen=True)
class Variant:
    """One named degradation: `kind` is white, pink, babble (with `snr_db`), reverb (`rt60`), telephone
    or speed (`factor`)."""

    kind: str
    snr_db: float | None = None
    rt60: float | None = None
    factor: float | None = None

    @property
    def name(self) -> str:
        if self.kind in NOISES:
            return f"{self.kind}-{self.snr_db:g}db"
        if self.kind == "reverb":
            return f"reverb-{self.rt60:g}s"
        if self.kind == "speed":
            return f"speed-{self.factor:g}"
        return self.kind

    def apply(self, samples: np.ndarray, rng: np.random.Generator,
              talkers: Sequence[np.ndarray] = ()) -> np.ndarray:
        """`samples` degraded; babble mixes `talkers` (other clips), which it needs."""
        if self.kind == "white":
            return mix_at_snr(samples, white_noise(len(samples), rng), self.snr_db)
        if self.kind == "pink":
            return mix_at_snr(samples, pink_noise(len(samples), rng), self.snr_db)
        if self.kind == "babble":
            if not talkers:
                raise ValueError("babble noise needs other clips to mix (talkers)")
            return mix_at_snr(samples, babble(len(samples), talkers, rng), self.snr_db)
        if self.kind == "reverb":
            return reverberate(samples, room_impulse_response(self.rt60, rng))
        if self.kind == "telephone":
            return telephone(samples)
        if self.kind == "speed":
            return change_speed(samples, self.factor)
        raise ValueError(f"unknown degradation {self.kind!r}")


STANDARD_VARIANTS: tuple[Variant, ...] = (
    *(Variant(noise, snr_db=snr) for noise in NOISES for snr in SNRS),
    Variant("reverb", rt60=REVERB_RT60),
    Variant("telephone"),
    *(Variant("speed", factor=factor) for factor in SPEEDS),
)


def parse_variant(name: str) -> Variant:
    """'white-10db', 'pink-5db', 'babble-20db', 'reverb-0.6s', 'telephone', 'speed-0.9' -> a Variant."""
    kind, _, setting = name.strip().lower().partition("-")
    try:
        if kind in NOISES and setting.endswith("db"):
            return Variant(kind, snr_db=float(setting[:-2]))
        if kind == "reverb" and setting.endswith("s") and float(setting[:-1]) > 0:
            return Variant(kind, rt60=float(setting[:-1]))
        if kind == "speed" and 0.5 <= float(setting) <= 2.0:
            return Variant(kind, factor=float(setting))
        if kind == "telephone" and not setting:
            return Variant(kind)
    except ValueError:
        pass
    raise ValueError(f"unknown variant {name!r}; use e.g. white-10db, pink-5db, babble-20db, reverb-0.6s, "
                     "telephone, speed-0.9 (or 'all' for the standard set)")


def parse_variants(spec: str) -> list[Variant]:
    """'all' (the standard 13) or a comma-separated list of variant names."""
    if spec.strip().lower() == "all":
        return list(STANDARD_VARIANTS)
    variants = [parse_variant(name) for name in spec.split(",") if name.strip()]
    if not variants:
        raise ValueError("no variant named; use 'all' or e.g. white-10db,telephone")
    return variants


@dataclass(frozen=True)
class Augmentation:
    """Extra degraded copies of every calibration clip, at settings drawn at random per copy.

    Each copy picks a kind uniformly from `kinds`, an SNR uniformly in `snr_db` (noise), an RT60 in
    `rt60` (reverb) or a factor in `speed` (speed); babble mixes `talkers` other clips of the dataset.
    The draws are fixed by `seed` and the clip's id.
    """

    copies: int = 1
    seed: int = 0
    kinds: tuple[str, ...] = ("white", "pink", "babble", "reverb", "telephone", "speed")
    snr_db: tuple[float, float] = (0.0, 20.0)
    rt60: tuple[float, float] = (0.3, 1.0)
    speed: tuple[float, float] = (0.85, 1.15)

    def __post_init__(self):
        if self.copies < 1:
            raise ValueError(f"augmentation needs at least one copy per clip, got {self.copies}")
        unknown = set(self.kinds) - {*NOISES, "reverb", "telephone", "speed"}
        if unknown or not self.kinds:
            raise ValueError(f"unknown augmentation kinds: {', '.join(sorted(unknown)) or 'none given'}")

    @property
    def description(self) -> str:
        return f"+{self.copies} degraded cop{'y' if self.copies == 1 else 'ies'} per clip (seed {self.seed})"

    def draw(self, clip_id: str, copy: int) -> tuple[Variant, np.random.Generator]:
        """The degradation of copy `copy` of clip `clip_id`, and the generator its noise comes from."""
        rng = rng_for(self.seed, "augment", clip_id, copy)
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        if kind in NOISES:
            variant = Variant(kind, snr_db=round(float(rng.uniform(*self.snr_db)), 1))
        elif kind == "reverb":
            variant = Variant(kind, rt60=round(float(rng.uniform(*self.rt60)), 2))
        elif kind == "speed":
            variant = Variant(kind, factor=round(float(rng.uniform(*self.speed)), 3))
        else:
            variant = Variant(kind)
        return variant, rng

    def copies_of(self, clip_id: str, samples: np.ndarray, talkers: Sequence[np.ndarray]) -> list[tuple[Variant, np.ndarray]]:
        out = []
        for copy in range(self.copies):
            variant, rng = self.draw(clip_id, copy)
            out.append((variant, variant.apply(samples, rng, talkers)))
        return out
