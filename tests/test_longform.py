"""Long recordings as batched windows: VAD windows planned from known layouts, timestamps mapped back onto the
file's clock, windows of several files batched in order, output formats, audio containers, threads."""

from __future__ import annotations

import io
import json
import os
from types import SimpleNamespace

import av
import numpy as np
import pytest

from lite_whisper.cli import main
from lite_whisper.data.audio import AudioError, load_audio
from lite_whisper.serving.scheduler import BatchScheduler
from lite_whisper.transcription import engine as engine_module
from lite_whisper.transcription.engine import EngineBase, transcribe_clips
from lite_whisper.transcription.formats import render
from lite_whisper.transcription.longform import Window, assemble, clamp, plan_windows, speech_regions
from lite_whisper.transcription.policy import split_segments, to_transcription
from lite_whisper.transcription.types import Decoded, DecodingOptions, Segment, Transcription, Word

RATE = 16_000
S = RATE  # one second in samples


# --- planning windows -------------------------------------------------------------------------------------

@pytest.mark.parametrize("regions, windows", [
    ([], []),
    ([(0, 10 * S)], [(0, 10 * S)]),
    # pauses inside 30 s stay in one window
    ([(1 * S, 8 * S), (9 * S, 20 * S), (21 * S, 31 * S)], [(1 * S, 31 * S)]),
    # a region that would push the window past 30 s starts the next one; the gap between windows goes
    ([(0, 20 * S), (22 * S, 40 * S), (45 * S, 70 * S)], [(0, 20 * S), (22 * S, 40 * S), (45 * S, 70 * S)]),
    ([(0, 10 * S), (12 * S, 25 * S), (26 * S, 30 * S), (40 * S, 50 * S)], [(0, 30 * S), (40 * S, 50 * S)]),
    # a region longer than a window (no pause found) is cut into equal parts
    ([(0, 75 * S)], [(0, 25 * S), (25 * S, 50 * S), (50 * S, 75 * S)]),
    ([(5 * S, 6 * S), (7 * S, 7 * S)], [(5 * S, 6 * S)]),  # an empty region is dropped
])
def test_plan_windows_known_layouts(regions, windows):
    planned = plan_windows(regions)
    assert [(w.start, w.end) for w in planned] == windows
    assert all(w.end - w.start <= 30 * S for w in planned)


def test_segments_map_back_onto_the_file_clock_across_window_boundaries():
    windows = [Window(0, 20 * S), Window(22 * S, 40 * S), Window(45 * S, 70 * S)]
    parts = [Transcription("a", " one two", 20.0, [Segment(0.0, 8.5, "one"), Segment(8.5, 21.0, "two")]),
             Transcription("a", "", 18.0, []),
             Transcription("a", "three", 25.0, [Segment(0.48, 24.0, "three")])]
    result = assemble("long", 75 * S, windows, parts, timestamps=True)
    assert result.text == "one two three" and result.seconds == 75.0
    # 21.0 s runs past its 20 s window: held to it; the third window starts at 45 s
    assert [(s.start, s.end, s.text) for s in result.segments] == [
        (0.0, 8.5, "one"), (8.5, 20.0, "two"), (45.48, 69.0, "three")]
    assert assemble("long", 75 * S, windows, parts, timestamps=False).segments == []


def test_segments_split_at_timestamp_tokens_with_their_tokens():
    first, eos = 50363, 50256  # tiny.en's <|0.00|> and <|endoftext|>
    tokens = [first, 10, 11, first + 100, first + 100, 12, first + 250, eos]  # <0.00> a b <2.00><2.00> c <5.00>
    assert split_segments(tokens, first) == [(0.0, 2.0, [10, 11]), (2.0, 5.0, [12])]
    assert split_segments([10, 11, eos], first) == []  # no timestamps: no segments
    # transformers' long-form output: a second window's times start again at 0 and go on from the last end
    assert split_segments([first, 10, first + 50, first + 50, 11, first + 1500, first, 12, first + 25], first) == [
        (0.0, 1.0, [10]), (1.0, 30.0, [11]), (30.0, 30.5, [12])]


def test_segments_equal_the_tokenizers_offsets_on_random_timestamped_decodings():
    from conftest import tiny_processor

    tokenizer = tiny_processor().tokenizer
    first = tokenizer.convert_tokens_to_ids("<|0.00|>")
    rng = np.random.default_rng(0)
    for _ in range(200):
        tokens, time = [], 0
        for _ in range(rng.integers(1, 6)):  # segments: <t> words <t'> (pairs, or a single ending timestamp)
            tokens.append(first + time)
            tokens += [int(t) for t in rng.integers(200, 5000, rng.integers(1, 6))]
            time = min(time + int(rng.integers(1, 400)), 1500)
            tokens.append(first + time)
        expected = tokenizer._compute_offsets(tokens)
        ours = split_segments(tokens, first)
        assert [(round(a, 2), round(b, 2)) for a, b, _ in ours] == [
            (round(item["timestamp"][0], 2), round(item["timestamp"][1], 2)) for item in expected]
        assert [tokenizer.decode(part) for _, _, part in ours] == [item["text"] for item in expected]
    words = tokenizer(" Hello, world.", add_special_tokens=False).input_ids
    result = to_transcription(tokenizer, "clip", [first, *words, first + 50, tokenizer.eos_token_id], 16_000,
                              DecodingOptions(timestamps=True))
    assert result.text == "Hello, world." and [s.text for s in result.segments] == ["Hello, world."]
    assert tokenizer.decode(result.segments[0].tokens) == " Hello, world."  # its text tokens, no specials


def test_clamp_keeps_segments_inside_and_in_order():
    assert clamp(Segment(6.640000000000001, 12.4, "x"), 0.0, 11.0) == Segment(6.64, 11.0, "x")
    assert clamp(Segment(3.0, 2.0, "x"), 0.0, 11.0) == Segment(3.0, 3.0, "x")  # end never before start
    assert clamp(Segment(4.0, 6.0, "x"), 0.0, 11.0, after=5.0) == Segment(5.0, 6.0, "x")  # after the one before
    assert clamp(Segment(-1.0, 30.0, "x"), 2.0, 9.0) == Segment(2.0, 9.0, "x")


def test_speech_regions_find_real_speech_between_silences(speech_dir):
    speech = load_audio(speech_dir / "extra" / "jfk.flac")  # 11 s
    rng = np.random.default_rng(0)
    quiet = lambda seconds: (0.001 * rng.standard_normal(int(seconds * S))).astype(np.float32)  # noqa: E731
    audio = np.concatenate([quiet(5), speech, quiet(10), speech, quiet(3)])
    regions = speech_regions(audio)
    assert regions, "no speech found"
    assert all(0 <= a < b <= len(audio) for a, b in regions)
    assert regions[0][0] >= 4 * S  # nothing in the first 4 s of near-silence
    # every region lies within the two spoken stretches (+ Silero's 0.4 s padding)
    first, second = (5 * S, 5 * S + len(speech)), (15 * S + len(speech), 15 * S + 2 * len(speech))
    pad = int(0.45 * S)
    assert all(first[0] - pad <= a and b <= first[1] + pad or second[0] - pad <= a and b <= second[1] + pad
               for a, b in regions), regions
    windows = plan_windows(regions)
    assert len(windows) == 2  # the 10 s pause separates the two speeches; each fits one window


# --- windows through any engine ------------------------------------------------------------------------

class WordTokenizer:
    """Tokens are words (token n, an int as real tokens are, reads "ns"); enough of a Whisper tokenizer for
    `to_transcription` and the fallback."""

    eos_token_id = 1000

    def __call__(self, text, add_special_tokens=False):
        return SimpleNamespace(input_ids=text.split())

    def convert_tokens_to_ids(self, token):
        return {"<|0.00|>": 1003}[token]

    def decode(self, tokens, skip_special_tokens=True):
        return " ".join(f"{token}s" if isinstance(token, int) else token for token in tokens)


class WindowEngine(EngineBase):
    """An engine that 'transcribes' each window as the number of seconds it holds, and records its batches."""

    name = "windows"
    generation_config = SimpleNamespace(is_multilingual=False)
    tokenizer = WordTokenizer()

    def __init__(self):
        self.batches, self.sequential = [], []

    def features(self, clips):
        return [round(len(clip) / S) for clip in clips]

    def encode(self, features):
        self.batches.append(list(features))
        return features

    def decode(self, encoded, options):
        return [Decoded([seconds]) for seconds in encoded]

    def take(self, encoded, indices):
        return [encoded[index] for index in indices]

    def transcribe_long(self, name, samples, options):
        self.sequential.append(name)
        return Transcription(name, "walked", len(samples) / RATE, [Segment(0.0, 999.0, "walked")])


@pytest.fixture
def layout(monkeypatch):
    """Long clips' speech at 0-20 s, 22-40 s and 45-70 s, whatever the audio."""
    monkeypatch.setattr(engine_module, "speech_regions", lambda samples: [(0, 20 * S), (22 * S, 40 * S),
                                                                          (45 * S, 70 * S)])


def test_windows_of_several_files_are_batched_in_order(layout):
    engine = WindowEngine()
    clips = [("a", np.zeros(10 * S, np.float32)), ("b", np.zeros(75 * S, np.float32)),
             ("c", np.zeros(5 * S, np.float32)), ("d", np.zeros(72 * S, np.float32))]
    results = list(transcribe_clips(engine, clips, batch_size=3))
    assert [r.source for r in results] == ["a", "b", "c", "d"]
    assert [r.text for r in results] == ["10s", "20s 18s 25s", "5s", "20s 18s 25s"]
    assert [r.seconds for r in results] == [10.0, 75.0, 5.0, 72.0]
    assert engine.batches == [[10, 20, 18], [25, 5, 20], [18, 25]]  # windows of different files share batches
    assert engine.sequential == []


def test_sequential_long_form_walks_the_engine_and_holds_segments_to_the_clip(layout):
    engine = WindowEngine()
    options = DecodingOptions(long_form="sequential", timestamps=True)
    short, long = list(transcribe_clips(engine, [("a", np.zeros(10 * S, np.float32)),
                                                 ("b", np.zeros(75 * S, np.float32))], options=options))
    assert engine.sequential == ["b"] and long.text == "walked"
    assert long.segments == [Segment(0.0, 75.0, "walked")]  # 999 s held to the clip's 75 s
    assert short.text == "10s"


def test_a_long_clip_without_speech_is_empty(monkeypatch):
    monkeypatch.setattr(engine_module, "speech_regions", lambda samples: [])
    engine = WindowEngine()
    (result,) = transcribe_clips(engine, [("quiet", np.zeros(60 * S, np.float32))])
    assert result.text == "" and result.seconds == 60.0 and engine.batches == []


def test_long_form_is_checked():
    with pytest.raises(ValueError, match="long form"):
        DecodingOptions(long_form="chunked")


def test_the_server_batches_a_long_request_as_windows(monkeypatch):
    import lite_whisper.serving.scheduler as scheduler_module

    monkeypatch.setattr(scheduler_module, "speech_regions", lambda samples: [(0, 20 * S), (22 * S, 40 * S),
                                                                             (45 * S, 70 * S)])
    engine = WindowEngine()
    scheduler = BatchScheduler(engine, max_batch=8, max_wait_ms=50)
    try:
        futures = [scheduler.submit("long", np.zeros(75 * S, np.float32), DecodingOptions()),
                   scheduler.submit("short", np.zeros(4 * S, np.float32), DecodingOptions())]
        long, short = (future.result(timeout=30) for future in futures)
    finally:
        scheduler.close()
    assert long.text == "20s 18s 25s" and long.seconds == 75.0 and short.text == "4s"
    assert sorted(sum(engine.batches, [])) == [4, 18, 20, 25] and engine.sequential == []


# --- output formats -------------------------------------------------------------------------------------

def test_tsv_and_subtitles_of_a_long_transcription():
    result = Transcription("x", "one two", 75.0, [Segment(0.0, 8.5, "one"), Segment(45.48, 69.0, "two\tthree")])
    tsv, media = render(result, "tsv", task="transcribe", language="en")
    assert media.startswith("text/tab-separated-values")
    assert tsv.splitlines() == ["start\tend\ttext", "0\t8500\tone", "45480\t69000\ttwo three"]
    srt, _ = render(result, "srt", task="transcribe", language="en")
    assert "2\n00:00:45,480 --> 00:01:09,000\ntwo\tthree\n" in srt


# --- audio containers ---------------------------------------------------------------------------------------

def write_with_pyav(path, samples: np.ndarray, container: str, codec: str, rate: int = RATE) -> None:
    """`samples` (16 kHz mono) encoded with FFmpeg's `codec` in `container`, frame by frame."""
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=rate)
        stream.layout = "mono"
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
        if rate != RATE:
            import soxr

            pcm = (soxr.resample(samples, RATE, rate) * 32767).astype(np.int16)
        for start in range(0, len(pcm), 960):
            frame = av.AudioFrame.from_ndarray(pcm[None, start:start + 960], format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)


@pytest.mark.parametrize("name, container, codec, rate", [
    ("clip.m4a", "mp4", "aac", RATE), ("clip.mp4", "mp4", "aac", RATE), ("clip.webm", "webm", "libopus", 48_000),
    ("clip.mkv", "matroska", "aac", RATE)])
def test_containers_ffmpeg_reads_decode_to_the_same_samples(tmp_path, name, container, codec, rate):
    t = np.arange(2 * RATE) / RATE
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * np.minimum(1, t * 4)).astype(np.float32)
    write_with_pyav(tmp_path / name, tone, container, codec, rate)
    decoded = load_audio(tmp_path / name)
    assert decoded.dtype == np.float32 and abs(len(decoded) - len(tone)) <= 0.1 * RATE  # codec priming at most
    lags = range(0, min(3000, len(decoded) - RATE))
    best = max(np.corrcoef(tone[:RATE], decoded[lag:lag + RATE])[0, 1] for lag in lags)
    assert best > 0.99  # the same waveform, within codec loss


def test_undecodable_files_say_what_is_supported(tmp_path):
    bad = tmp_path / "notes.m4a"
    bad.write_bytes(b"not audio at all" * 64)
    with pytest.raises(AudioError, match=r"notes\.m4a: cannot decode audio .*m4a"):
        load_audio(bad)


def test_the_server_decodes_an_m4a_upload(tmp_path):
    from lite_whisper.serving.requests import decode_audio

    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)).astype(np.float32)
    write_with_pyav(tmp_path / "a.m4a", tone, "mp4", "aac")
    samples = decode_audio("a.m4a", (tmp_path / "a.m4a").read_bytes(), max_seconds=None)
    assert abs(len(samples) - RATE) < 0.1 * RATE
    with pytest.raises(Exception, match="cannot decode the audio") as caught:
        decode_audio("b.m4a", b"junk" * 100, max_seconds=None)
    assert "BytesIO" not in str(caught.value)  # no object addresses in what a client reads


# --- the command line ------------------------------------------------------------------------------------

def test_output_files_are_checked_before_the_model_loads(tmp_path, capsys):
    audio = tmp_path / "talk.wav"
    import soundfile as sf

    sf.write(audio, np.zeros(RATE, np.float32), RATE)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "talk.srt").write_text("mine")
    # a model that does not exist: had the outputs not been checked first, loading it would fail instead
    assert main(["transcribe", "no-such-model", str(audio), "--output-format", "srt",
                 "--output-dir", str(tmp_path / "out")]) == 2
    assert "talk.srt exists; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "out" / "talk.srt").read_text() == "mine"
    assert main(["transcribe", "no-such-model", str(audio), "--output-dir", str(tmp_path / "out")]) == 2
    assert "--output-dir needs --output-format" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    sf.write(other / "talk.wav", np.zeros(RATE, np.float32), RATE)
    assert main(["transcribe", "no-such-model", str(audio), str(other / "talk.wav"), "--output-format", "txt",
                 "--output-dir", str(tmp_path / "new")]) == 2
    assert "would both write" in capsys.readouterr().err


def test_transcribe_writes_every_format_for_a_folder(tmp_path, capsys, monkeypatch):
    import soundfile as sf

    import lite_whisper.api as api

    folder = tmp_path / "talks"
    (folder / "day1").mkdir(parents=True)
    sf.write(folder / "day1" / "a.wav", np.zeros(3 * RATE, np.float32), RATE)
    write_with_pyav(folder / "b.m4a", np.zeros(2 * RATE, np.float32), "mp4", "aac")
    seen = {}

    def fake_load_engine(spec, backend="auto", **kwargs):
        seen.update(kwargs, backend=backend)
        return WindowEngine()

    monkeypatch.setattr(api, "load_engine", fake_load_engine)
    out = tmp_path / "out"
    assert main(["transcribe", "tiny.en", str(folder), "--output-format", "all", "--output-dir", str(out),
                 "--threads", "1"]) == 0
    assert seen["threads"] == 1  # --threads reaches the engine
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        f"{name}.{fmt}" for name in ("day1/a", "b") for fmt in ("txt", "srt", "vtt", "tsv", "json"))
    assert (out / "day1" / "a.txt").read_text() == "3s\n"
    verbose = json.loads((out / "b.json").read_text())
    assert verbose["text"] == "2s" and verbose["duration"] == pytest.approx(2.0, abs=0.1)
    assert (out / "b.vtt").read_text().startswith("WEBVTT\n\n00:00:00.000 --> ")
    assert not list(out.rglob("*.partial"))


def test_physical_cores_and_threads():
    import torch

    from lite_whisper.runtime.threads import physical_cores, use_threads

    assert 1 <= physical_cores() <= len(os.sched_getaffinity(0))
    before = torch.get_num_threads()
    try:
        assert use_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_read_samples_reads_bytes_as_files_do(tmp_path):
    import soundfile as sf

    from lite_whisper.data.audio import read_samples

    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, tone, RATE, format="WAV", subtype="FLOAT")
    samples, rate = read_samples(buffer.getvalue(), "x.wav")
    assert rate == RATE and np.array_equal(samples[:, 0], tone)


class HeadingEngine(WindowEngine):
    """Stops after the heading without timestamps; with them, says the whole sentence (as base did on dev)."""

    WORDS = "chapter sixteen i might have told you of the beginning of this liaison in a few lines".split()

    class tokenizer(WordTokenizer):  # token i reads WORDS[i]
        def decode(self, tokens, skip_special_tokens=True):
            return " ".join(HeadingEngine.WORDS[token] for token in tokens)

    tokenizer = tokenizer()

    def decode(self, encoded, options):
        tokens = list(range(len(self.WORDS)))
        return [Decoded(tokens if options.timestamps else tokens[:2]) for _ in encoded]


def test_transcribe_clips_recovers_a_window_cut_short(monkeypatch):
    import lite_whisper.transcription.early_end as early_end

    monkeypatch.setattr(early_end, "speech_regions", lambda samples: [(0, len(samples))])
    clip = [("chapter", np.zeros(12 * S, np.float32))]
    (recovered,) = transcribe_clips(HeadingEngine(), clip)
    assert recovered.text.startswith("chapter sixteen i might have told you")
    (plain,) = transcribe_clips(HeadingEngine(), clip, options=DecodingOptions(recover_early_end=False))
    assert plain.text == "chapter sixteen"


def test_the_server_recovers_a_window_cut_short(monkeypatch):
    import lite_whisper.transcription.early_end as early_end

    monkeypatch.setattr(early_end, "speech_regions", lambda samples: [(0, len(samples))])
    scheduler = BatchScheduler(HeadingEngine(), max_batch=4, max_wait_ms=10)
    try:
        result = scheduler.submit("chapter", np.zeros(12 * S, np.float32), DecodingOptions()).result(timeout=30)
    finally:
        scheduler.close()
    assert result.text.startswith("chapter sixteen i might have told you")


# --- word timestamps ---------------------------------------------------------------------------------------

class PieceTokenizer:
    """Token i decodes to PIECES[i]."""

    PIECES = [" Ask", " not", "!", " what", " your", " coun", "try", " can", " do", "."]

    def decode(self, tokens, skip_special_tokens=True):
        return "".join(self.PIECES[token] for token in tokens)


def test_words_are_timed_by_where_the_alignment_reaches_their_first_token():
    from lite_whisper.transcription.words import split_words, word_times

    tokens = list(range(len(PieceTokenizer.PIECES)))
    words, groups = split_words(PieceTokenizer(), tokens)
    assert words == [" Ask", " not", "!", " what", " your", " country", " can", " do", "."]
    assert groups[5] == [5, 6]
    # the warping path: token t (and the end of text, index 10) first reached at frame 10 * t + 5
    path = [(t, frame) for t in range(len(tokens) + 1) for frame in range(10 * t + 5, 10 * t + 15)]
    timed = word_times(PieceTokenizer(), tokens, path, [0.5] * len(tokens), offset=2.0)
    assert [w.word for w in timed] == [" Ask", " not!", " what", " your", " country", " can", " do."]
    assert [(w.start, w.end) for w in timed[:2]] == [(2.1, 2.3), (2.3, 2.5)]  # "not!" keeps "not"'s times
    assert (timed[4].start, timed[4].end) == (3.1, 3.5)  # two tokens: from the first to the next word's
    assert word_times(PieceTokenizer(), tokens, path[:30], None) == []  # a path that stops early is not trusted


def test_words_map_onto_the_file_clock_and_need_an_aligning_engine():
    windows = [Window(0, 20 * S), Window(30 * S, 50 * S)]
    parts = [Transcription("a", "one", 20.0, words=[Word(1.0, 1.5, " one", 0.9)]),
             Transcription("a", "two", 20.0, words=[Word(0.5, 25.0, " two", 0.8)])]
    result = assemble("long", 50 * S, windows, parts, timestamps=False)
    assert [(w.start, w.end, w.word) for w in result.words] == [(1.0, 1.5, " one"), (30.5, 50.0, " two")]
    with pytest.raises(ValueError, match="an engine that aligns words"):
        list(transcribe_clips(WindowEngine(), [("a", np.zeros(S, np.float32))],
                              options=DecodingOptions(word_timestamps=True, timestamps=True)))
    with pytest.raises(ValueError, match="word timestamps"):
        DecodingOptions(word_timestamps=True, long_form="sequential")


class AligningEngine(WindowEngine):
    """A WindowEngine with integer tokens that aligns too: token i reached at frame 10 i."""

    aligns_words = True

    generation_config = SimpleNamespace(is_multilingual=False, eos_token_id=1000, decoder_start_token_id=1001,
                                        no_timestamps_token_id=1002)

    def decode(self, encoded, options):
        return [Decoded([seconds]) for seconds in encoded]

    def align(self, encoded, prompt, tokens, frames):
        return [([(i, 10 * i) for i in range(len(window) + 1)], [0.9] * len(window)) for window in tokens]


def test_the_server_times_words_like_transcribe_clips():
    clip = np.zeros(3 * S, np.float32)
    options = DecodingOptions(word_timestamps=True, timestamps=True)
    scheduler = BatchScheduler(AligningEngine(), max_batch=4, max_wait_ms=10)
    try:
        served = scheduler.submit("a", clip, options).result(timeout=30)
    finally:
        scheduler.close()
    (direct,) = transcribe_clips(AligningEngine(), [("a", clip)], options=options)
    assert served.words == direct.words == [Word(0.0, 0.2, "3s", 0.9)]


def test_word_timestamps_from_the_command_line_and_in_verbose_json(tmp_path, capsys, monkeypatch):
    import soundfile as sf

    import lite_whisper.api as api

    sf.write(tmp_path / "a.wav", np.zeros(3 * RATE, np.float32), RATE)
    seen = {}

    def fake_load_engine(spec, backend="auto", **kwargs):
        seen.update(kwargs, backend=backend)
        return AligningEngine()

    monkeypatch.setattr(api, "load_engine", fake_load_engine)
    assert main(["transcribe", "tiny.en", str(tmp_path / "a.wav"), "--word-timestamps", "--json"]) == 0
    assert seen["backend"] == "auto"  # every engine aligns: a PyTorch model in PyTorch
    (printed,) = json.loads(capsys.readouterr().out)
    assert printed["words"] == [{"start": 0.0, "end": 0.2, "word": "3s", "probability": 0.9}]
    result = Transcription("x", "3s", 3.0, [Segment(0.0, 3.0, "3s")],
                           words=[Word(0.0, 0.2, " 3s", 0.9)])
    body = json.loads(render(result, "verbose_json", task="transcribe", language="en")[0])
    assert body["words"] == [{"word": "3s", "start": 0.0, "end": 0.2, "probability": 0.9}]
    assert body["segments"][0]["avg_logprob"] is None  # known only when the engine scored the window


@pytest.mark.parametrize("command", [["compress", "tiny.en", "-o", "out"], ["calibrate", "tiny.en", "-o", "x.stats"],
                                     ["eval", "tiny.en"], ["transcribe", "tiny.en", "a.wav"]])
def test_every_command_that_runs_a_model_takes_threads(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*command, "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err
