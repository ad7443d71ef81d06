"""The one timing harness (`benchmark.harness`) on fake contenders and a fake clock: turn order, the warm-up's
stop rule, a failing contender and one out of memory reported while the others finish."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lite_whisper.benchmark.harness import Contender, describe_failure, in_own_process, run_interleaved


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def clips(count: int) -> list[tuple[str, np.ndarray]]:
    return [(f"c{i}", np.zeros(16000, np.float32)) for i in range(count)]


def fake(name: str, clock: FakeClock, calls: list, seconds_per_clip: float = 1.0, warmup_seconds=(),
         fail_on: str | None = None, error: Exception | None = None) -> Contender:
    """A contender that logs (name, clip ids), advances the clock, and fails on clip `fail_on`."""
    warmups = list(warmup_seconds)

    def transcribe(items):
        ids = [clip_id for clip_id, _ in items]
        calls.append((name, ids))
        if fail_on in ids:
            raise error
        clock.now += warmups.pop(0) if warmups else seconds_per_clip * len(items)
        return [f"{name} {clip_id}" for clip_id in ids]

    return Contender(name, transcribe)


def test_contenders_take_turns_chunk_by_chunk_after_their_warm_ups():
    clock, calls = FakeClock(), []
    timings = run_interleaved([fake("A", clock, calls), fake("B", clock, calls, seconds_per_clip=2.0)], clips(5),
                              chunk_size=2, clock=clock)
    assert calls[:4] == [("A", ["c0"]), ("A", ["c0"]), ("B", ["c0"]), ("B", ["c0"])]  # steady from the start: 2 runs
    assert calls[4:] == [("A", ["c0", "c1"]), ("B", ["c0", "c1"]), ("A", ["c2", "c3"]), ("B", ["c2", "c3"]),
                     ("A", ["c4"]), ("B", ["c4"])]
    a, b = timings
    assert (a.name, a.wall_seconds, a.warmup_runs, a.failure) == ("A", 5.0, 2, "")
    assert b.wall_seconds == 10.0 and b.hypotheses == [f"B c{i}" for i in range(5)]


def test_the_warm_up_runs_until_two_runs_agree_and_no_longer_than_allowed():
    clock, calls = FakeClock(), []
    settling = fake("settling", clock, calls, warmup_seconds=[5.0, 2.0, 1.05, 1.0])
    never = fake("never", clock, calls, warmup_seconds=[8.0, 4.0, 2.0, 1.0, 0.5])
    timings = run_interleaved([settling, never], clips(1), clock=clock, max_warmup_runs=4)
    # settling: 5 -> 2 -> 1.05 -> 1.0 (within 10% of 1.05): 4 runs; never: stops at the limit of 4
    assert [t.warmup_runs for t in timings] == [4, 4]
    clock, calls = FakeClock(), []
    quick = fake("quick", clock, calls, warmup_seconds=[3.0, 1.0, 0.95])
    (timing,) = run_interleaved([quick], clips(1), clock=clock)
    assert timing.warmup_runs == 3  # 1.0 -> 0.95 is within 10%
    # the warm-up is not timed: only the one timed pass of c0 (after the warm-up list ran out: 1 s a clip)
    assert timing.wall_seconds == 1.0


def test_warm_up_clips_of_their_own_are_never_timed_and_a_minimum_of_runs_holds():
    clock, calls = FakeClock(), []
    warm = [("w", np.zeros(160, np.float32))]
    timings = run_interleaved([fake("A", clock, calls)], clips(2), chunk_size=1, warmup_with=warm,
                              min_warmup_runs=3, clock=clock)
    assert calls == [("A", ["w"])] * 3 + [("A", ["c0"]), ("A", ["c1"])]  # steady at once, yet 3 warm-up runs
    assert timings[0].warmup_runs == 3 and timings[0].chunk_seconds == [1.0, 1.0]


def test_a_fixed_warm_up_runs_exactly_that_many_times_and_each_chunk_is_timed():
    """The leaderboard's preset: a fixed count of warm-up runs (0 for none), whether or not the runs agree."""
    for runs in (0, 3):
        clock, calls = FakeClock(), []
        steady = fake("steady", clock, calls)
        (timing,) = run_interleaved([steady], clips(5), chunk_size=2, warmup_clips=2, warmup_runs=runs, clock=clock)
        assert timing.warmup_runs == runs and calls[:runs] == [("steady", ["c0", "c1"])] * runs
        assert timing.chunk_seconds == [2.0, 2.0, 1.0] and timing.wall_seconds == 5.0


def test_a_failing_contender_is_reported_and_the_others_finish():
    clock, calls = FakeClock(), []
    broken = fake("broken", clock, calls, fail_on="c3", error=ValueError("bad shape"))
    timings = run_interleaved([fake("A", clock, calls), broken, fake("C", clock, calls)], clips(6), chunk_size=2,
                              clock=clock)
    a, b, c = timings
    assert b.failure == "ValueError: bad shape" and b.failed
    assert b.hypotheses == ["broken c0", "broken c1"]  # what it did before the failure
    assert not a.failed and not c.failed and len(a.hypotheses) == len(c.hypotheses) == 6
    assert ("broken", ["c4", "c5"]) not in calls  # dropped after its failure


def test_out_of_memory_is_named_as_such_and_a_warm_up_failure_drops_the_contender():
    clock, calls = FakeClock(), []
    oom = fake("oom", clock, calls, fail_on="c0", error=torch.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    timings = run_interleaved([oom, fake("A", clock, calls)], clips(3), clock=clock)
    assert timings[0].failure.startswith("out of memory: OutOfMemoryError") and timings[0].warmup_runs == 0
    assert calls.count(("oom", ["c0"])) == 1 and timings[1].hypotheses == ["A c0", "A c1", "A c2"]
    assert describe_failure(MemoryError()).startswith("out of memory")
    assert describe_failure(RuntimeError("[ONNXRuntimeError] : 6 : Failed to allocate memory for requested buffer"))\
        .startswith("out of memory")
    assert describe_failure(KeyError("x")) == "KeyError: 'x'"


def test_a_contender_that_returns_too_few_transcripts_fails():
    clock = FakeClock()

    def short(items):
        clock.now += 1.0
        return ["only one"]

    (timing,) = run_interleaved([Contender("short", short)], clips(4), chunk_size=4, clock=clock)
    assert timing.failure == "returned 1 transcripts for 4 clips"


def test_bad_arguments_are_refused():
    contender = Contender("A", lambda items: ["x"] * len(items))
    with pytest.raises(ValueError, match="no contenders"):
        run_interleaved([], clips(1))
    with pytest.raises(ValueError, match="names must differ"):
        run_interleaved([contender, contender], clips(1))
    with pytest.raises(ValueError, match="no clips"):
        run_interleaved([contender], [])
    with pytest.raises(ValueError, match="chunk_size"):
        run_interleaved([contender], clips(1), chunk_size=0)


class Echo:
    """Built in a contender's own process (importable: this module travels by name): transcripts name the
    process, clip and sample count; `fail_on` raises, `die_on` kills the process as the kernel's OOM killer would."""

    def __init__(self, tag: str, fail_on: str | None = None, die_on: str | None = None, ballast_mb: int = 0):
        import os

        self.tag, self.fail_on, self.die_on, self.pid, self.calls = tag, fail_on, die_on, os.getpid(), 0
        self.ballast = bytearray(ballast_mb * 2**20)  # resident: its peak memory is this process's, not the parent's
        self.ballast[::4096] = b"x" * len(self.ballast[::4096])

    def __call__(self, items):
        import os
        import signal

        self.calls += 1
        for clip_id, samples in items:
            if clip_id == self.fail_on:
                raise MemoryError("could not allocate 12 GB")
            if clip_id == self.die_on:
                os.kill(os.getpid(), signal.SIGKILL)
        return [f"{self.tag} {self.pid} {clip_id} {len(samples)}" for clip_id, samples in items]

    def after_warmup(self):
        self.calls = 0

    def details(self):
        return {"calls_after_warmup": self.calls, "pid": self.pid}


def refuse_to_build(tag: str):
    raise FileNotFoundError(f"{tag}: no such model folder")


def test_contenders_in_their_own_processes_take_turns_and_report_their_own_memory():
    import os

    data = clips(5)
    timings = run_interleaved([in_own_process("A", Echo, data, "A", ballast_mb=64), in_own_process("B", Echo, data, "B"),
                               Contender("here", lambda items: [f"here {clip_id}" for clip_id, _ in items])],
                              data, chunk_size=2)
    a, b, here = timings
    assert not a.failed and not b.failed and not here.failed
    pids = {a.hypotheses[0].split()[1], b.hypotheses[0].split()[1]}
    assert len(pids) == 2 and str(os.getpid()) not in pids  # each in a process of its own
    assert a.hypotheses == [f"A {a.details['pid']} c{i} 16000" for i in range(5)]  # the clips' audio reached it
    assert a.details["calls_after_warmup"] == 3  # chunks of 2, 2, 1 after the warm-up was reset
    assert a.details["peak_rss_mb"] > b.details["peak_rss_mb"] + 48  # A's 64 MB ballast is A's alone
    assert here.details == {}


def test_a_process_contender_that_fails_to_build_raises_or_dies_is_reported_and_the_others_finish():
    data = clips(4)
    timings = run_interleaved([in_own_process("unbuilt", refuse_to_build, data, "large-v9"),
                               in_own_process("raises", Echo, data, "R", fail_on="c2"),
                               in_own_process("dies", Echo, data, "D", die_on="c3"),
                               in_own_process("fine", Echo, data, "F")], data, chunk_size=2)
    unbuilt, raises, dies, fine = timings
    assert unbuilt.failure == "FileNotFoundError: large-v9: no such model folder" and unbuilt.warmup_runs == 0
    assert raises.failure == "out of memory: MemoryError: could not allocate 12 GB"
    assert len(raises.hypotheses) == 2
    assert dies.failure == "its process ended with exit code -9 (killed: out of memory?)"
    assert len(dies.hypotheses) == 2
    assert not fine.failed and len(fine.hypotheses) == 4
