"""`lite-whisper serve` with real tiny.en on real speech: transcripts through the server, batched across
requests, equal `transcribe`'s clip by clip."""

from __future__ import annotations

import concurrent.futures

import httpx
import openai
import pytest
from http_server import metric, serving

from lite_whisper import load_engine, transcribe
from lite_whisper.data.datasets import load_dataset
from lite_whisper.benchmark.loadtest import encode_clips
from lite_whisper.transcription.types import WHISPER_TEMPERATURES, DecodingOptions

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine():
    return load_engine("tiny.en")


def test_sixteen_concurrent_dev_clips_get_the_transcripts_of_transcribe(engine, speech_dir):
    dev = list(load_dataset(speech_dir / "splits" / "dev.txt", limit=16))
    uploads = encode_clips(dev)  # float32 WAV: exactly the clips' samples
    options = DecodingOptions(temperatures=WHISPER_TEMPERATURES)  # the server's default, as `transcribe`'s
    alone = [transcribe(engine, clip.audio, batch_size=1, options=options)[0].text for clip in dev]
    with serving(engine, max_batch=8, max_wait_ms=200) as url:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(lambda upload: httpx.post(
                f"{url}/v1/audio/transcriptions", files={"file": (upload.name, upload.wav)},
                data={"model": "tiny.en"}, timeout=300), uploads))
        assert [r.status_code for r in responses] == [200] * 16
        assert [r.json()["text"] for r in responses] == alone
        text = httpx.get(f"{url}/metrics").text
        assert metric(text, "lite_whisper_batch_size_count") < 16  # some windows shared a batch
        assert metric(text, "lite_whisper_audio_seconds_total") == pytest.approx(sum(c.seconds for c in dev), rel=1e-3)

        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
        with (speech_dir / "extra" / "jfk.flac").open("rb") as audio:
            verbose = client.audio.transcriptions.create(model="tiny.en", file=audio, response_format="verbose_json",
                                                         timestamp_granularities=["word", "segment"])
        assert "ask not what your country can do for you" in verbose.text.lower()
        assert verbose.segments and verbose.segments[0].start == 0.0 and verbose.segments[-1].end <= 11.1
        assert verbose.segments[0].tokens and all(isinstance(token, int) for token in verbose.segments[0].tokens)
        # words timed by the PyTorch engine's own alignment, in order, inside the clip
        assert [w.word.strip(",.") for w in verbose.words][-4:] == ["do", "for", "your", "country"]
        assert all(0 <= a.start <= a.end <= b.start <= 11.1 for a, b in zip(verbose.words, verbose.words[1:]))
