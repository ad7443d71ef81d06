"""Dataset specs: folders, list files, manifests, references, order, limit, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from lite_whisper.data.datasets import DatasetError, load_dataset


def _wav(path, seconds=0.2, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, 0.1 * np.ones(int(rate * seconds), dtype=np.float32), rate)
    return path


@pytest.fixture
def librispeech(tmp_path):
    root = tmp_path / "libri"
    for speaker, chapter, utt in [("19", "198", "0001"), ("19", "198", "0000"), ("26", "495", "0000")]:
        _wav(root / speaker / chapter / f"{speaker}-{chapter}-{utt}.flac")
    (root / "19" / "198" / "19-198.trans.txt").write_text("19-198-0000 HELLO THERE\n19-198-0001 GENERAL KENOBI\n")
    (root / "26" / "495" / "26-495.trans.txt").write_text("26-495-0000 A THIRD ONE\n")
    return root


def test_librispeech_folder_in_stable_order(librispeech):
    clips = list(load_dataset(librispeech))
    assert [c.id for c in clips] == ["19/198/19-198-0000", "19/198/19-198-0001", "26/495/26-495-0000"]
    assert [c.reference for c in clips] == ["HELLO THERE", "GENERAL KENOBI", "A THIRD ONE"]
    assert clips[0].audio.dtype == np.float32 and clips[0].seconds == pytest.approx(0.2)


def test_limit_and_len(librispeech):
    dataset = load_dataset(librispeech, limit=2)
    assert len(dataset) == 2 and len(list(dataset)) == 2


def test_transcripts_tsv_folder_with_mixed_rates(tmp_path):
    _wav(tmp_path / "b.wav", rate=8000)
    _wav(tmp_path / "a.flac", rate=44100)
    (tmp_path / "transcripts.tsv").write_text("file\ttranscript\tcorpus\na.flac\tFirst one.\tx\nb.wav\tSecond, one!\tx\n")
    clips = list(load_dataset(tmp_path))
    assert [(c.id, c.reference) for c in clips] == [("a", "First one."), ("b", "Second, one!")]
    assert all(abs(len(c.audio) - 3200) <= 2 for c in clips)  # both resampled to 16 kHz


def test_list_file_relative_to_its_folder(librispeech, tmp_path):
    listing = tmp_path / "split.txt"
    listing.write_text("libri/26/495/26-495-0000.flac\n\nlibri/19/198/19-198-0001.flac\n")
    clips = list(load_dataset(listing))
    assert [c.reference for c in clips] == ["A THIRD ONE", "GENERAL KENOBI"]  # list order kept


def test_list_file_missing_audio(tmp_path):
    listing = tmp_path / "split.txt"
    listing.write_text("nothere.flac\n")
    with pytest.raises(DatasetError, match=r"split.txt:1: audio file nothere.flac not found"):
        load_dataset(listing)


def test_audio_without_reference(tmp_path):
    _wav(tmp_path / "x.wav")
    (clip,) = list(load_dataset(tmp_path))
    assert clip.reference is None


def test_tsv_and_jsonl_manifests(tmp_path):
    _wav(tmp_path / "audio" / "one.wav")
    _wav(tmp_path / "audio" / "two.wav")
    tsv = tmp_path / "m.tsv"
    tsv.write_text("path\ttext\naudio/two.wav\tsecond\naudio/one.wav\tfirst\n")
    assert [c.reference for c in load_dataset(tsv)] == ["second", "first"]
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text("\n".join(json.dumps({"audio_filepath": f"audio/{n}.wav", "text": n}) for n in ["one", "two"]))
    assert [(c.id, c.reference) for c in load_dataset(jsonl)] == [("audio/one", "one"), ("audio/two", "two")]


def test_manifest_errors(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("name\tsentence\nx.wav\thello\n")
    with pytest.raises(DatasetError, match="no audio path column"):
        load_dataset(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"path": "a.wav"\n')
    with pytest.raises(DatasetError, match="broken.jsonl:1: invalid JSON"):
        load_dataset(broken)


def test_spec_errors(tmp_path):
    with pytest.raises(DatasetError, match="dataset not found"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="contains no audio files"):
        load_dataset(tmp_path / "empty")
    (tmp_path / "data.csv").write_text("x")
    with pytest.raises(DatasetError, match="unknown dataset type '.csv'"):
        load_dataset(tmp_path / "data.csv")
    with pytest.raises(DatasetError, match="expected hf:NAME:SPLIT"):
        load_dataset("hf:only-a-name")
    with pytest.raises(DatasetError, match="limit must be a positive"):
        load_dataset(tmp_path, limit=0)


@pytest.mark.integration
def test_shared_splits_resolve(speech_dir):
    dev = load_dataset(speech_dir / "splits" / "dev.txt")
    assert len(dev) == 155
    calibration = load_dataset(speech_dir / "splits" / "calibration.txt")
    assert len(calibration) == 167
    # every dev clip has a reference: LibriSpeech trans.txt or extra/transcripts.tsv
    from lite_whisper.data.datasets import lookup_reference

    assert all(entry.reference for entry in dev._entries), [e.path for e in dev._entries if not e.reference]
    assert lookup_reference(speech_dir / "extra" / "LJ001-0002.flac") == "in being comparatively modern."


def test_a_limit_only_narrows(tmp_path):
    from lite_whisper.data.datasets import load_dataset

    for index in range(5):
        sf.write(tmp_path / f"c{index}.wav", np.zeros(1600, dtype=np.float32), 16000)
    dataset = load_dataset(tmp_path, limit=3)
    assert len(dataset.with_limit(256)) == 3 and len(dataset.with_limit(2)) == 2 and len(dataset.with_limit(None)) == 3
    assert len(load_dataset(tmp_path).with_limit(4)) == 4
