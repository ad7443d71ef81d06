"""torch.distributed: sharding covers every clip once; 2 gloo ranks give the single-process results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_english_model, tiny_processor, tiny_whisper_model

from lite_whisper.calibration.calibrate import calibrate
from lite_whisper.calibration.statistics import CalibrationStatistics
from lite_whisper.data.datasets import Clip, SpeechDataset, load_dataset
from lite_whisper.distributed import Ranks, from_environment
from lite_whisper.evaluation.evaluate import evaluate
from lite_whisper.transcription.types import DecodingOptions

WORKER = Path(__file__).parent / "distributed_worker.py"


def torchrun(*args: str, ranks: int = 2) -> subprocess.CompletedProcess:
    """Run `args` under torchrun on this machine (gloo, one thread per rank)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
                           *args], capture_output=True, text=True, env=env, timeout=600)


def streamed(count: int) -> SpeechDataset:
    return SpeechDataset("stream", stream=lambda: (Clip(f"c{i}", None, None) for i in range(count)))


@pytest.mark.parametrize("world", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("limit", [None, 4, 7])
def test_shards_hold_every_clip_exactly_once(calibration_folder, world, limit):
    listed = load_dataset(calibration_folder, limit=limit)  # 6 clips
    expected = [entry.id for entry in listed._entries[:limit]]
    shards = [listed.sharded(rank, world) for rank in range(world)]
    ids = [entry.id for shard in shards for entry in shard._entries[: shard.limit][shard.shard_index::world]]
    assert sorted(ids) == sorted(expected) and len(ids) == len(expected)
    assert sum(len(shard) for shard in shards) == len(expected)
    stream = streamed(10).with_limit(limit)
    parts = [[clip.id for clip in stream.sharded(rank, world)] for rank in range(world)]
    assert sorted(i for part in parts for i in part) == sorted(f"c{i}" for i in range(limit or 10))
    if limit is not None:  # a streamed shard knows its size only under a limit
        assert [len(part) for part in parts] == [stream.sharded(rank, world).size for rank in range(world)]
    else:
        assert all(stream.sharded(rank, world).size is None for rank in range(world))
    with pytest.raises(ValueError, match="shard index"):
        listed.sharded(world, world)
    if world > 1:
        with pytest.raises(ValueError, match="already a shard"):
            shards[0].sharded(0, 2)


def test_shuffle_is_a_seeded_permutation(calibration_folder):
    dataset = load_dataset(calibration_folder)
    order = [entry.id for entry in dataset.shuffled(3)._entries]
    assert sorted(order) == sorted(entry.id for entry in dataset._entries)
    assert order == [entry.id for entry in dataset.shuffled(3)._entries]
    assert order != [entry.id for entry in dataset._entries]  # seed 3 moves clips (6 clips: not by chance)
    assert order != [e.id for e in dataset.shuffled(4)._entries]  # and another seed orders them otherwise


def test_ranks_come_from_torchrun_environment(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert from_environment() == Ranks(0, 1)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    assert from_environment() == Ranks(3, 4) and not from_environment().main
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="not in a world of 4"):
        from_environment()


@pytest.mark.integration  # two processes under torchrun: seconds, not milliseconds
def test_two_gloo_ranks_calibrate_the_single_process_statistics(calibration_folder, tmp_path):
    run = torchrun(str(WORKER), "calibrate", str(calibration_folder), str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    assert not (tmp_path / "rank1.stats").exists()  # only rank 0 writes
    sharded = CalibrationStatistics.load(tmp_path / "rank0.stats")
    torch.set_num_threads(1)
    single = calibrate(tiny_whisper_model(), tiny_processor(), str(calibration_folder), batch_size=2, progress=False)
    assert (sharded.calibration_clips, sharded.calibration_frames) == (single.calibration_clips,
                                                                       single.calibration_frames) == (6, single.calibration_frames)
    assert sharded.moments.keys() == single.moments.keys()
    for key, moments in single.moments.items():
        other = sharded.moments[key]
        assert other.count == moments.count
        for mine, theirs in ((other.sum, moments.sum), (other.outer, moments.outer)):
            assert float((mine - theirs).norm() / theirs.norm()) <= 1e-10, key


@pytest.mark.integration  # two processes under torchrun: seconds, not milliseconds
def test_two_gloo_ranks_evaluate_the_single_process_result(calibration_folder, tmp_path):
    lines = ["file\ttranscript"] + [f"clip{index}.wav\tword number {index}" for index in range(6)]
    (calibration_folder / "transcripts.tsv").write_text("\n".join(lines) + "\n")
    run = torchrun(str(WORKER), "evaluate", str(calibration_folder), str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "rank1.none").exists()
    sharded = json.loads((tmp_path / "eval.json").read_text())
    torch.set_num_threads(1)
    single = evaluate((tiny_english_model(), tiny_processor()), str(calibration_folder), batch_size=2, progress=False,
                      options=DecodingOptions(language="en", max_new_tokens=8)).to_dict()
    rows = lambda result: [(u["id"], u["hypothesis"], u["words"]) for u in result["utterances"]]  # noqa: E731
    assert rows(sharded) == rows(single) and len(rows(single)) == 6  # dataset order, same transcripts
    for key in ("clips", "words", "wer", "mean_utterance_wer", "substitutions", "deletions", "insertions"):
        assert sharded[key] == single[key], key


@pytest.mark.integration
def test_torchrun_compress_of_tiny_en_matches_one_process(speech_dir, tmp_path):
    """`torchrun --nproc-per-node 2 ... lite-whisper compress` on 8 real clips (and, by default, a degraded
    copy of each): same statistics and ranks."""
    from lite_whisper.cli import main
    from lite_whisper.compression.report import REPORT_FILE

    calibration = str(speech_dir / "splits" / "calibration.txt")
    common = ["tiny.en", "--calibration", calibration, "--limit", "8", "--batch-size", "2", "--threshold", "0.99",
              "--no-progress"]
    run = torchrun("--no-python", sys.executable, "-m", "lite_whisper", "compress", *common,
                   "-o", str(tmp_path / "two"), "--stats", str(tmp_path / "two.stats"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("wrote ") == 1  # rank 0 alone reports and writes
    torch.set_num_threads(1)
    assert main(["compress", *common, "-o", str(tmp_path / "one"), "--stats", str(tmp_path / "one.stats")]) == 0
    one, two = (CalibrationStatistics.load(tmp_path / f"{name}.stats") for name in ("one", "two"))
    assert one.calibration_clips == two.calibration_clips == 16
    for key, moments in one.moments.items():
        assert float((two.moments[key].outer - moments.outer).norm() / moments.outer.norm()) <= 1e-10, key
    ranks = [json.loads((tmp_path / name / REPORT_FILE).read_text())["layers"] for name in ("one", "two")]
    assert [[m["rank"] for m in layer.values()] for layer in ranks[0]] == \
        [[m["rank"] for m in layer.values()] for layer in ranks[1]]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == \
        ["one", "one.stats", "two", "two.stats"]


def test_calibrate_shards_by_hand_merge_to_the_whole(tmp_path, calibration_folder, capsys):
    """`lite-whisper calibrate --shard I/N` on each "machine", merged by compress: the whole set's statistics."""
    from lite_whisper.cli import main
    from lite_whisper.models.loading import save_model

    dense = save_model(tiny_whisper_model(vocab_size=51864), tiny_processor(), tmp_path / "dense")
    common = ["calibrate", str(dense), "--calibration", str(calibration_folder), "--no-progress", "--batch-size", "2"]
    assert main([*common, "-o", str(tmp_path / "whole.stats")]) == 0
    for index in range(3):
        assert main([*common, "--shard", f"{index}/3", "-o", str(tmp_path / f"part{index}.stats")]) == 0
    whole = CalibrationStatistics.load(tmp_path / "whole.stats")
    parts = [CalibrationStatistics.load(tmp_path / f"part{index}.stats") for index in range(3)]
    # 6 clips, each with the degraded copy calibration adds by default, in 3 shards
    assert [part.calibration_clips for part in parts] == [4, 4, 4]
    merged = parts[0].merge(parts[1]).merge(parts[2])
    for key, moments in whole.moments.items():
        assert float((merged.moments[key].outer - moments.outer).norm() / moments.outer.norm()) <= 1e-10
    # compress merges the shard files itself
    assert main(["compress", str(dense), *sum((["--stats", str(tmp_path / f"part{i}.stats")] for i in range(3)), []),
                 "--threshold", "0.6", "--no-progress", "-o", str(tmp_path / "lite")]) == 0
    # a shuffled subset: 3 of the 6 clips (and their copies), the same 3 for the same seed
    for name in ("a", "b"):
        assert main([*common, "--shuffle-seed", "5", "--limit", "3", "-o", str(tmp_path / f"{name}.stats")]) == 0
    a, b = (CalibrationStatistics.load(tmp_path / f"{name}.stats") for name in ("a", "b"))
    assert a.calibration_clips == 6 and a.digest() == b.digest()
    capsys.readouterr()
    assert main([*common, "-o", str(tmp_path / "whole.stats")]) == 2  # exists
    assert "already exists" in capsys.readouterr().err
    for bad in ("3/3", "x", "1/0"):
        assert main([*common, "--shard", bad, "-o", str(tmp_path / "new.stats")]) == 2
    assert not (tmp_path / "new.stats").exists()


def test_autocast_calibration_stays_close_to_float32(calibration_folder):
    model, processor = tiny_whisper_model(), tiny_processor()
    exact = calibrate(model, processor, str(calibration_folder), progress=False)
    mixed = calibrate(model, processor, str(calibration_folder), progress=False, compute_dtype=torch.bfloat16)
    for key, moments in exact.moments.items():
        error = float((mixed.moments[key].covariance() - moments.covariance()).norm() / moments.covariance().norm())
        assert 0 < error < 0.2, key  # bfloat16 compute really happened (8-bit mantissas), near float32
