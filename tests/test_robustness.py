"""Harder evaluation and decoding safeguards: degradations with known answers, variant sets, the loop
detector, augmented calibration data, and Whisper's temperature fallback over the engine protocol."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from conftest import tiny_english_model, tiny_processor

from lite_whisper.cli import main
from lite_whisper.data.augment import (
    STANDARD_VARIANTS,
    Augmentation,
    Variant,
    band_pass,
    change_speed,
    mix_at_snr,
    mu_law,
    parse_variants,
    pink_noise,
    power,
    reverberate,
    rng_for,
    room_impulse_response,
    telephone,
)
from lite_whisper.data.datasets import load_dataset
from lite_whisper.data.variants import build_variants, variant_folders
from lite_whisper.evaluation.loops import is_cut_short, is_loop
from lite_whisper.evaluation.wer import word_errors
from lite_whisper.runtime.pytorch import PyTorchEngine
from lite_whisper.transcription.engine import decode_with_fallback, transcribe_clips
from lite_whisper.transcription.policy import compression_ratio, needs_fallback
from lite_whisper.transcription.types import WHISPER_TEMPERATURES, Decoded, DecodingOptions

RATE = 16_000


def tone(frequency: float, seconds: float = 2.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def band_power(samples: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64))) ** 2
    frequencies = np.fft.rfftfreq(len(samples), 1 / RATE)
    return float(spectrum[(frequencies >= low) & (frequencies < high)].sum())


@pytest.mark.parametrize("snr", [20.0, 10.0, 5.0, 0.0])
def test_noise_is_mixed_at_the_asked_snr(snr):
    speech = tone(440, amplitude=0.05) + tone(1300, amplitude=0.02)  # quiet: the mix never needs scaling down
    noise = np.random.default_rng(1).standard_normal(len(speech) // 3)  # shorter: looped
    mixed = mix_at_snr(speech, noise, snr)
    assert mixed.dtype == np.float32 and len(mixed) == len(speech)
    assert 10 * np.log10(power(speech) / power(mixed - speech)) == pytest.approx(snr, abs=0.01)


def test_a_loud_mix_is_scaled_down_as_a_whole_keeping_the_snr():
    speech = tone(440, amplitude=0.95)
    mixed = mix_at_snr(speech, np.random.default_rng(0).standard_normal(len(speech)), 0.0)
    assert np.abs(mixed).max() <= 0.99
    scale = np.dot(mixed, speech) / np.dot(speech, speech)
    assert 10 * np.log10(power(scale * speech) / power(mixed - scale * speech)) == pytest.approx(0.0, abs=0.05)


def test_silence_stays_silent():
    assert not mix_at_snr(np.zeros(RATE, np.float32), np.ones(RATE), 10).any()


@pytest.mark.parametrize("factor", [0.9, 1.1, 0.85, 1.15])
def test_speed_changes_the_length_by_the_factor(factor):
    samples = tone(440, seconds=3.0)
    assert len(change_speed(samples, factor)) == pytest.approx(len(samples) / factor, abs=2)


def test_telephone_keeps_the_voice_band_and_removes_the_rest():
    voice, high, low = tone(1000), tone(5000), tone(120)
    assert band_power(telephone(voice), 900, 1100) > 0.8 * band_power(voice, 900, 1100)
    assert band_power(telephone(high), 3500, 8000) < 1e-4 * band_power(high, 3500, 8000)
    assert band_power(telephone(low), 50, 250) < 1e-3 * band_power(low, 50, 250)
    assert len(telephone(voice)) == len(voice)


def test_band_pass_and_mu_law_known_answers():
    mixed = tone(200) + tone(1000)
    passed = band_pass(mixed, 500, 2000, RATE)
    assert band_power(passed, 150, 250) < 1e-6 * band_power(mixed, 150, 250)
    x = np.linspace(-1, 1, 1001)
    error = np.abs(mu_law(x) - x)
    assert error.max() < 0.025 and error[np.abs(x) < 0.01].max() < 2e-4  # 8-bit steps: coarse near 1, fine near 0


def test_pink_noise_has_equal_power_per_octave():
    noise = pink_noise(RATE * 8, np.random.default_rng(0))
    octaves = [band_power(noise, f, 2 * f) for f in (125, 250, 500, 1000, 2000)]
    assert max(octaves) / min(octaves) < 1.3  # white noise would double per octave


def test_room_response_decays_60_db_at_rt60_and_keeps_the_level():
    rng = np.random.default_rng(0)
    response = room_impulse_response(0.5, rng)
    assert response[0] == 1.0 and len(response) == RATE // 2
    early, late = power(response[100:800]), power(response[-700:])
    assert 10 * np.log10(early / late) > 45  # most of the 60 dB between the two ends
    speech = tone(440)
    wet = reverberate(speech, response)
    assert power(wet) == pytest.approx(power(speech), rel=1e-3)
    assert not np.allclose(wet, speech, atol=0.01)


def test_draws_are_fixed_by_seed_and_clip():
    speech = tone(440)
    variant = Variant("white", snr_db=10)
    same = [variant.apply(speech, rng_for(0, variant.name, "clip-a")) for _ in range(2)]
    other = variant.apply(speech, rng_for(0, variant.name, "clip-b"))
    assert np.array_equal(same[0], same[1]) and not np.array_equal(same[0], other)
    augmentation = Augmentation(copies=3, seed=4)
    assert [augmentation.draw("x", copy)[0] for copy in range(3)] == [Augmentation(copies=3, seed=4).draw("x", copy)[0]
                                                                     for copy in range(3)]


def test_variant_names_round_trip():
    assert len(STANDARD_VARIANTS) == 13
    assert parse_variants("all") == list(STANDARD_VARIANTS)
    assert [v.name for v in parse_variants("white-10db, telephone,speed-0.9,reverb-1.2s")] == [
        "white-10db", "telephone", "speed-0.9", "reverb-1.2s"]
    for bad in ("white", "white-10", "reverb-0s", "speed-9", "echo-3db", ""):
        with pytest.raises(ValueError):
            parse_variants(bad)


def write_clips(folder, count=4):
    folder.mkdir()
    rows = ["file\ttranscript"]
    for index in range(count):
        sf.write(folder / f"c{index}.wav", tone(300 + 100 * index, seconds=1 + index % 2), RATE)
        rows.append(f"c{index}.wav\tclip number {index}")
    (folder / "transcripts.tsv").write_text("\n".join(rows) + "\n")
    return folder


def test_augmented_dataset_is_deterministic_and_shards_the_same(tmp_path):
    dataset = load_dataset(write_clips(tmp_path / "clips")).augmented(Augmentation(copies=2, seed=1))
    assert dataset.size == 12 and "+2 degraded copies" in dataset.description
    whole = list(dataset)
    again = list(dataset)
    assert [clip.id for clip in whole][:3] == ["c0", f"c0~{whole[1].id.split('~')[1]}", whole[2].id]
    assert all(a.id == b.id and np.array_equal(a.audio, b.audio) for a, b in zip(whole, again))
    assert all(clip.reference.startswith("clip number") for clip in whole)
    shards = [clip for index in range(2) for clip in dataset.sharded(index, 2)]
    by_id = {clip.id: clip.audio for clip in whole}
    assert sorted(clip.id for clip in shards) == sorted(by_id)
    assert all(np.array_equal(clip.audio, by_id[clip.id]) for clip in shards)
    assert dataset.with_limit(1).size == 3
    assert dataset.augmented(None).size == 4


def test_calibration_with_augmentation_is_deterministic_under_a_seed(tmp_path):
    from lite_whisper.calibration.calibrate import calibrate

    model, processor = tiny_english_model(), tiny_processor()
    clips = load_dataset(write_clips(tmp_path / "clips"))

    def digest(seed: int) -> str:
        augmented = clips.augmented(Augmentation(copies=1, seed=seed))
        assert augmented.description.endswith("(4 clips +1 degraded copy per clip (seed %d): 8 in all)" % seed)
        statistics = calibrate(model, processor, augmented, batch_size=3, progress=False)
        assert statistics.calibration_clips == 8
        return statistics.digest()

    assert digest(0) == digest(0) != digest(1)


def test_variants_are_written_with_a_manifest_and_read_back(tmp_path):
    source = load_dataset(write_clips(tmp_path / "clips", 3))
    variants = parse_variants("babble-10db,white-5db,speed-1.1")
    manifest = build_variants(source, variants, tmp_path / "out", seed=2, progress=False)
    assert [entry["name"] for entry in manifest["variants"]] == ["babble-10db", "white-5db", "speed-1.1"]
    assert json.loads((tmp_path / "out" / "variants.json").read_text()) == manifest
    assert 9.5 < manifest["variants"][0]["measured_snr_db"]["min"] <= manifest["variants"][0]["measured_snr_db"]["max"] < 10.5
    folders = variant_folders(tmp_path / "out")
    clips = list(load_dataset(folders[2][1]))
    assert [clip.reference for clip in clips] == [f"clip number {index}" for index in range(3)]
    assert len(clips[1].audio) == pytest.approx(2 * RATE / 1.1, abs=3)
    with pytest.raises(FileExistsError):
        build_variants(source, variants, tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="at least 2 clips"):
        build_variants(source.with_limit(1), variants, tmp_path / "one", progress=False)
    assert not (tmp_path / "one").exists()


def test_variants_command_refuses_bad_input_before_work(tmp_path, capsys):
    clips = write_clips(tmp_path / "clips", 2)
    assert main(["variants", "--data", str(clips), "--variants", "white-3", "-o", str(tmp_path / "v")]) == 2
    assert "--variants" in capsys.readouterr().err and not (tmp_path / "v").exists()
    assert main(["variants", "--data", str(clips), "--variants", "telephone", "-o", str(tmp_path / "v"),
                 "--no-progress"]) == 0
    assert main(["variants", "--data", str(clips), "-o", str(tmp_path / "v")]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("reference_words, hypothesis, looping", [
    (10, "the cat sat on the mat and then it went to sleep", False),
    (10, " ".join(["very"] * 40), True),  # compresses like a repetition
    (5, "one two three four five six seven eight nine ten eleven", True),  # over twice as long
    (1, "yes yes i did", False),  # short references count as three words
    (1, "oh well i am not sure what you mean by that", True),
    (0, "", False),
    (30, "and so " * 6 + "they went home after the long day at the fair", False),  # a stutter, not a loop
])
def test_loop_detector(reference_words, hypothesis, looping):
    assert is_loop(reference_words, hypothesis) is looping


SENTENCE = "chapter twelve it was a fine morning in may when the family set out for the coast"


@pytest.mark.parametrize("hypothesis, missing, cut", [
    ("chapter twelve", 15, True),  # base's failure: the heading, then end of text
    ("", 17, True),  # nothing at all while the audio holds speech
    (SENTENCE, 0, False),
    ("chapter twelve it was a fine morning in may when the family set out", 3, False),  # a few words: errors
    ("chapter twelve it was fine morning in may when family set out for the coast", 0, False),  # deletions inside
    ("chapter twelve it was a fine morning", 10, True),
    ("chapter twelve it was a fine morning in may when the family set", 4, False),  # under 30% of the reference
])
def test_cut_short_detector(hypothesis, missing, cut):
    errors = word_errors(SENTENCE, hypothesis)
    assert errors.trailing_deletions == missing
    assert is_cut_short(errors) is cut
    assert not is_cut_short(word_errors("yes i did", "yes"))  # under four words missing


class ScriptedEngine:
    """An engine whose greedy decode loops and whose samples are scripted per temperature (logic only)."""

    def __init__(self, tokenizer, samples):
        self.tokenizer, self.samples, self.calls = tokenizer, samples, []

    def take(self, encoded, indices):
        return [encoded[index] for index in indices]

    def decode(self, encoded, options):
        self.calls.append((options.temperature, list(encoded)))
        return [self.samples[options.temperature][clip] for clip in encoded]


def test_fallback_retries_only_failing_windows_and_keeps_the_best_sample():
    tokenizer = tiny_processor().tokenizer
    words = tokenizer.encode(" the cat sat on the mat", add_special_tokens=False)
    loop = tokenizer.encode(" very" * 60, add_special_tokens=False)
    good = Decoded(words, 0.01, -0.2)
    samples = {0.0: {"a": Decoded(loop, 0.01, -0.1), "b": good, "s": Decoded(loop, 0.9, -2.0)},
               0.2: {"a": Decoded(words[:3], 0.01, -0.4)}}
    engine = ScriptedEngine(tokenizer, samples)
    options = DecodingOptions(temperatures=WHISPER_TEMPERATURES, best_of=2)
    decoded = decode_with_fallback(engine, ["a", "b", "s"], options)
    assert decoded[0].tokens == words[:3] and decoded[1] is good
    assert decoded[2].tokens == loop  # the silence rule's window is not resampled
    assert engine.calls == [(0.0, ["a", "b", "s"]), (0.2, ["a", "a"])]
    assert needs_fallback(tokenizer, Decoded(loop, 0.0, -0.1), options)
    assert not needs_fallback(tokenizer, good, options)
    assert needs_fallback(tokenizer, Decoded(words, 0.0, -1.5), options)  # low confidence
    greedy = ScriptedEngine(tokenizer, samples)
    assert decode_with_fallback(greedy, ["a"], DecodingOptions())[0].tokens == loop and len(greedy.calls) == 1


def test_fallback_that_never_passes_keeps_the_best_attempt():
    tokenizer = tiny_processor().tokenizer
    loop = tokenizer.encode(" very" * 60, add_special_tokens=False)
    unsure = tokenizer.encode(" maybe a word", add_special_tokens=False)
    samples = {t: {"a": Decoded(unsure, 0.0, -3.0 + t)} for t in WHISPER_TEMPERATURES[1:]}
    samples[0.0] = {"a": Decoded(loop, 0.0, -0.1)}
    decoded = decode_with_fallback(ScriptedEngine(tokenizer, samples), ["a"], DecodingOptions(
        temperatures=WHISPER_TEMPERATURES, best_of=1))
    assert decoded[0].tokens == unsure and decoded[0].mean_logprob == pytest.approx(-2.0)  # best of the plausible


def test_fallback_shortens_a_looping_random_model():
    """A tiny random model repeats itself greedily; with the fallback its sampled transcript no longer loops."""
    engine = PyTorchEngine(tiny_english_model(), tiny_processor())
    clip = [("noise", 0.1 * np.random.default_rng(0).standard_normal(RATE).astype(np.float32))]
    base = dict(language="en", max_new_tokens=60, no_speech_threshold=None)
    greedy = next(transcribe_clips(engine, clip, options=DecodingOptions(**base)))
    assert compression_ratio(greedy.text) > 2.4  # the constructed loop
    options = DecodingOptions(**base, temperatures=WHISPER_TEMPERATURES, best_of=2)
    runs = [next(transcribe_clips(engine, clip, options=options)).text for _ in range(2)]
    assert runs[0] == runs[1]  # seeded samples
    assert compression_ratio(runs[0]) < compression_ratio(greedy.text)
    assert compression_ratio(runs[0]) <= 2.4  # passes Whisper's loop test: no longer a loop
