"""Bad input as a new user makes it, and files that survive crashes: one-line errors (exit 2), nothing
half-written, stale or foreign results refused, two writers never interleaved."""

from __future__ import annotations

import errno
import json
import multiprocessing
import shutil
import subprocess
import sys
import time

import pytest
import torch
from conftest import tiny_processor, tiny_whisper_model

from lite_whisper.calibration.calibrate import calibrate
from lite_whisper.calibration.statistics import CalibrationStatistics, StatisticsMismatchError
from lite_whisper.cli import main
from lite_whisper.compression.compress import compress
from lite_whisper.compression.config import CompressionConfig
from lite_whisper.files import OutputBusyError, atomic_folder, output_lock
from lite_whisper.models.loading import save_model


@pytest.fixture
def dense_folder(tmp_path):
    return save_model(tiny_whisper_model(vocab_size=51864), tiny_processor(), tmp_path / "dense")


def cli_error(capsys, argv: list[str]) -> str:
    """Run the CLI, expect exit code 2 and a one-line error without a traceback; return that line."""
    capsys.readouterr()  # drop what earlier commands printed
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]  # progress notes may come first; the error is one line at the end
    assert last.startswith(f"lite-whisper {argv[0]}: error: "), err
    return last


def compress_args(dense, calibration, out, *extra) -> list[str]:
    return ["compress", str(dense), "--calibration", str(calibration), "--threshold", "0.6:0.7", "--no-progress",
            "-o", str(out), *extra]


# ----------------------------------------------------------------------------- devices


@pytest.mark.parametrize("command", [["eval", "tiny.en"], ["transcribe", "tiny.en", "x.wav"],
                                     ["bench", "tiny.en"], ["compress", "tiny.en", "-o", "never"]])
def test_bad_devices_are_one_line_errors(capsys, command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.wav").write_bytes(b"")
    assert "not a torch device" in cli_error(capsys, [*command, "--device", "foo"])
    if not torch.cuda.is_available():
        assert "CUDA is not available" in cli_error(capsys, [*command, "--device", "cuda"])
    assert not (tmp_path / "never").exists()


# ----------------------------------------------------------------------------- models


def test_folder_with_config_but_no_weights(tmp_path, capsys, dense_folder):
    broken = tmp_path / "broken"
    shutil.copytree(dense_folder, broken)
    (broken / "model.safetensors").unlink()
    message = cli_error(capsys, ["inspect", str(broken)])
    assert "no weights" in message and str(broken) in message


def test_compressing_a_compressed_folder_is_refused_before_calibrating(tmp_path, capsys, dense_folder,
                                                                      calibration_folder, monkeypatch):
    lite = tmp_path / "lite"
    assert main(compress_args(dense_folder, calibration_folder, lite)) == 0
    import lite_whisper.compression.pipeline as pipeline

    monkeypatch.setattr(pipeline, "calibrate", lambda *a, **k: pytest.fail("calibrated a compressed model"))
    message = cli_error(capsys, compress_args(lite, calibration_folder, tmp_path / "again"))
    assert "already compressed" in message and "dense model" in message
    assert not (tmp_path / "again").exists()


# ----------------------------------------------------------------------------- statistics files


def test_statistics_are_written_atomically_and_truncation_is_detected(tmp_path, capsys, dense_folder,
                                                                      calibration_folder, monkeypatch):
    stats = tmp_path / "tiny.stats"
    assert main(compress_args(dense_folder, calibration_folder, tmp_path / "a", "--stats", str(stats))) == 0
    whole = stats.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    stats.write_bytes(whole[: len(whole) // 2])
    message = cli_error(capsys, compress_args(dense_folder, calibration_folder, tmp_path / "b", "--stats", str(stats)))
    assert "truncated or corrupt" in message and "calibrate again" in message
    stats.write_bytes(whole[:5])
    assert "truncated or corrupt" in cli_error(
        capsys, compress_args(dense_folder, calibration_folder, tmp_path / "b", "--stats", str(stats)))

    # a crash while writing leaves the old file as it was and no temporary behind
    import lite_whisper.calibration.statistics as statistics_module

    def crash(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    stats.write_bytes(whole)
    statistics = CalibrationStatistics.load(stats)
    monkeypatch.setattr(statistics_module, "save_file", crash)
    with pytest.raises(OSError):
        statistics.save(stats)
    assert stats.read_bytes() == whole
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_statistics_of_other_weights_are_refused_unless_allowed(tmp_path, capsys, calibration_folder):
    processor = tiny_processor()
    first = save_model(tiny_whisper_model(seed=0, vocab_size=51864), processor, tmp_path / "first")
    second = save_model(tiny_whisper_model(seed=1, vocab_size=51864), processor, tmp_path / "second")  # same shape
    stats = tmp_path / "first.stats"
    assert main(compress_args(first, calibration_folder, tmp_path / "a", "--stats", str(stats))) == 0
    message = cli_error(capsys, compress_args(second, calibration_folder, tmp_path / "b", "--stats", str(stats)))
    assert "other weights" in message and "--allow-stats-mismatch" in message
    assert not (tmp_path / "b").exists()
    assert main(compress_args(second, calibration_folder, tmp_path / "b", "--stats", str(stats),
                              "--allow-stats-mismatch")) == 0
    # library: the same check
    model = tiny_whisper_model(seed=1, vocab_size=51864)
    with pytest.raises(StatisticsMismatchError, match="fingerprint"):
        compress(model, CalibrationStatistics.load(stats), CompressionConfig())


def test_fingerprint_is_the_same_in_float16_and_float32():
    from lite_whisper.calibration.statistics import weight_fingerprint

    model = tiny_whisper_model().half().float()  # weights representable in float16
    assert weight_fingerprint(model) == weight_fingerprint(model.half())
    assert weight_fingerprint(model) != weight_fingerprint(tiny_whisper_model(seed=3))


def test_stats_given_twice_merge_and_a_missing_one_is_an_error(tmp_path, capsys, dense_folder, calibration_folder):
    a, b = tmp_path / "a.stats", tmp_path / "b.stats"
    for stats, limit in ((a, "2"), (b, "4")):
        assert main(compress_args(dense_folder, calibration_folder, tmp_path / f"out-{stats.stem}",
                                  "--stats", str(stats), "--limit", limit)) == 0
    merged = tmp_path / "merged"
    assert main(compress_args(dense_folder, tmp_path / "nowhere", merged, "--stats", str(a), "--stats", str(b))) == 0
    # 2 + 4 clips, each with the degraded copy calibration adds by default
    assert json.loads((merged / "compression_report.json").read_text())["calibration_clips"] == 12
    message = cli_error(capsys, compress_args(dense_folder, calibration_folder, tmp_path / "x",
                                              "--stats", str(a), "--stats", str(tmp_path / "missing.stats")))
    assert "missing.stats" in message and "do not exist" in message


# ----------------------------------------------------------------------------- output folders


def test_disk_full_while_saving_leaves_nothing_and_says_so(tmp_path, capsys, dense_folder, calibration_folder,
                                                           monkeypatch):
    from safetensors import SafetensorError

    import lite_whisper.lowrank.checkpoint as checkpoint

    def full(self, *args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")

    monkeypatch.setattr(checkpoint.LiteWhisperForConditionalGeneration, "save_pretrained", full)
    out = tmp_path / "lite"
    message = cli_error(capsys, compress_args(dense_folder, calibration_folder, out))
    assert "disk" in message
    assert not out.exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name or "lock" in p.name]


def test_failed_overwrite_leaves_the_old_folder_intact(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "weights").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_folder(target, overwrite=True) as staging:
            (staging / "weights").write_text("half new")
            raise RuntimeError("crash while writing")
    assert (target / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def _hold_lock(path, ready, release):
    with output_lock(path):
        ready.set()
        release.wait(30)


def test_a_second_writer_of_the_same_output_gets_a_clear_error(tmp_path, capsys, dense_folder, calibration_folder):
    out = tmp_path / "lite"
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(out, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(OutputBusyError, match="another lite-whisper process"):
            with atomic_folder(out):
                pass
        message = cli_error(capsys, compress_args(dense_folder, calibration_folder, out))
        assert "another lite-whisper process is writing" in message
    finally:
        release.set()
        holder.join(30)
    assert not out.exists()
    assert main(compress_args(dense_folder, calibration_folder, out)) == 0  # free again
    with output_lock(out):  # the same process may nest
        with output_lock(out):
            pass


# ----------------------------------------------------------------------------- validation before work


def test_evaluate_and_default_paths_are_checked_before_loading(tmp_path, capsys, dense_folder, calibration_folder,
                                                               monkeypatch):
    import lite_whisper.models.loading as loading

    monkeypatch.setattr(loading, "_load", lambda *a, **k: pytest.fail("loaded a model before validating"))
    message = cli_error(capsys, compress_args(dense_folder, calibration_folder, tmp_path / "o", "--evaluate",
                                              "--data", str(tmp_path / "no-such-data")))
    assert "no-such-data" in message
    assert "--eval-limit" in cli_error(capsys, compress_args(dense_folder, calibration_folder, tmp_path / "o",
                                                             "--evaluate", "--eval-limit", "0"))
    assert "only apply with --evaluate" in cli_error(
        capsys, compress_args(dense_folder, calibration_folder, tmp_path / "o", "--eval-limit", "3"))
    monkeypatch.setenv("LITE_WHISPER_SPEECH", str(tmp_path / "no-speech-here"))
    message = cli_error(capsys, ["compress", str(dense_folder), "-o", str(tmp_path / "o")])
    assert "default calibration set" in message and "--calibration" in message and "LITE_WHISPER_SPEECH" in message
    message = cli_error(capsys, ["eval", str(dense_folder)])
    assert "default evaluation set" in message and "--data" in message


def test_sweep_arguments_are_checked_before_loading(tmp_path, capsys, dense_folder, calibration_folder, monkeypatch):
    import lite_whisper.models.loading as loading

    monkeypatch.setattr(loading, "_load", lambda *a, **k: pytest.fail("loaded a model before validating"))
    base = ["sweep", str(dense_folder), "--calibration", str(calibration_folder), "--data", str(calibration_folder),
            "-o", str(tmp_path / "sweep")]
    assert "--batch-size" in cli_error(capsys, [*base, "--thresholds", "0.9", "--batch-size", "0"])
    assert "expected a number" in cli_error(capsys, [*base, "--thresholds", "0.9,abc"])
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert "pip install 'lite-whisper[plot]'" in cli_error(capsys, [*base, "--thresholds", "0.9"])
    assert not (tmp_path / "sweep").exists()


def test_internal_errors_are_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    import lite_whisper.cli.inspect as inspect_command

    def bug(args):
        raise AttributeError("'NoneType' object has no attribute 'x'")

    monkeypatch.setattr(inspect_command, "run", bug)
    assert main(["inspect", "anything"]) == 1
    err = capsys.readouterr().err
    assert "internal error" in err and "--debug" in err and "Traceback" not in err
    with pytest.raises(AttributeError):
        main(["--debug", "inspect", "anything"])


def test_calibration_statistics_equal_after_save_and_load(tmp_path, calibration_folder):
    model, processor = tiny_whisper_model(vocab_size=51864), tiny_processor()
    statistics = calibrate(model, processor, calibration_folder, progress=False)
    statistics.save(tmp_path / "s.stats")
    loaded = CalibrationStatistics.load(tmp_path / "s.stats")
    assert loaded.digest() == statistics.digest() and loaded.signature == statistics.signature
    assert loaded.signature.fingerprint is not None and len(loaded.signature.fingerprint) == 16


def test_inspect_a_folder_without_its_report(tmp_path, capsys, dense_folder, calibration_folder):
    lite = tmp_path / "lite"
    assert main(compress_args(dense_folder, calibration_folder, lite)) == 0
    report = json.loads((lite / "compression_report.json").read_text())
    (lite / "compression_report.json").unlink()
    capsys.readouterr()
    assert main(["inspect", str(lite), "--json"]) == 0
    structural = json.loads(capsys.readouterr().out)
    assert structural["threshold"] == "unknown"  # calibration facts are gone with the report
    assert structural["encoder_params_after"] == report["encoder_params_after"]
    assert [{k: v["rank"] for k, v in layer.items()} for layer in structural["layers"]] == \
        [{k: v["rank"] for k, v in layer.items()} for layer in report["layers"]]


def test_pipeline_saves_a_folder_that_loads_with_its_config_recorded(tmp_path, calibration_folder):
    from lite_whisper import __version__
    from lite_whisper.api import load_model
    from lite_whisper.compression.pipeline import compress_and_save, load_or_calibrate
    from lite_whisper.lowrank.modeling_lite_whisper import LiteWhisperForConditionalGeneration

    model, processor = tiny_whisper_model(vocab_size=51864), tiny_processor()
    loaded = load_or_calibrate(model, processor, str(calibration_folder), stats_files=[tmp_path / "s.stats"],
                               progress=False)
    assert loaded.source == str(calibration_folder) and (tmp_path / "s.stats").exists()
    report = compress_and_save(model, processor, loaded, CompressionConfig.parse("0.6"), tmp_path / "lite")
    again = load_or_calibrate(model, processor, None, stats_files=[tmp_path / "s.stats"])  # read back, no audio
    assert again.statistics.digest() == loaded.statistics.digest() and again.source == str(tmp_path / "s.stats")
    lite, _ = load_model(tmp_path / "lite")
    assert isinstance(lite, LiteWhisperForConditionalGeneration)
    assert [dict(layer) for layer in lite.config.low_rank_config] == [
        {name: entry.rank for name, entry in layer.items() if entry.rank} for layer in report.layers]
    config = json.loads((tmp_path / "lite" / "config.json").read_text())
    assert config["lite_whisper"] == {"version": __version__, "compression": {
        "attention_threshold": 0.6, "mlp_threshold": 0.6, "rank_multiple": 16, "rank_rule": "robust",
        "target_params": None, "target_flops": None, "version": 2}}
    assert report.config == config["lite_whisper"]["compression"] and report.lite_whisper_version == __version__


# ----------------------------------------------------------------------------- file modes


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_folders_and_files_get_the_modes_of_the_users_umask(tmp_path, umask):
    """Atomic writes go through private temporaries (0700 folders, 0600 files); what appears must not stay private."""
    import os
    import stat

    from test_bench import random_factors
    from test_statistics import calibration_batches

    from lite_whisper.calibration.calibrate import collect_statistics
    from lite_whisper.files import write_json_atomic
    from lite_whisper.lowrank.convert import to_lite_whisper

    previous = os.umask(umask)
    try:
        lite = to_lite_whisper(tiny_whisper_model(vocab_size=51864), random_factors([{"fc1": 16}] * 2))
        folder = save_model(lite, tiny_processor(), tmp_path / "lite")
        report = write_json_atomic(tmp_path / "out" / "eval.json", {"wer": 1.0})
        statistics = tmp_path / "model.stats"  # safetensors writes a file of its own: its mode was 0600
        collect_statistics(tiny_whisper_model(), calibration_batches([[1500]]), progress=False).save(statistics)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    files = [path for path in folder.rglob("*") if path.is_file()] + [report, statistics]
    assert {"model.safetensors", "config.json", "modeling_lite_whisper.py"} <= {path.name for path in files}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name


# ----------------------------------------------------------------------------- what the user sees


def test_warnings_are_one_line_and_bars_are_labelled(tmp_path, capsys, calibration_folder):
    """Our warnings read `warning: ...` (no source path, no code line, no category); third-party warnings and
    transformers' per-file bars stay out; long work says what it reads and each bar says what it is."""
    from conftest import tiny_english_model

    dense_folder = save_model(tiny_english_model(), tiny_processor(), tmp_path / "dense")
    (calibration_folder / "transcripts.tsv").write_text("file\ttext\n" + "".join(
        f"clip{index}.wav\thello\n" for index in range(6)))
    assert main(["compress", str(dense_folder), "--calibration", str(calibration_folder), "--threshold", "0.6:0.7",
                 "-o", str(tmp_path / "lite")]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    warning = [line for line in lines if line.startswith("warning: ")]
    # 6 clips and, by default, a degraded copy of each
    assert len(warning) == 1 and "statistics from only 12 calibration clips" in warning[0]
    assert "UserWarning" not in err and ".py:" not in err and "Warning" not in err
    assert "Writing model shards" not in err and "Loading weights" not in err
    assert f"calibrating {dense_folder} on {calibration_folder} (6 clips +1 degraded copy per clip (seed 0): 12 in all)" \
        in err
    assert any(line.startswith("calibrating:") for line in lines)  # the bar

    assert main(["eval", str(tmp_path / "lite"), "--data", str(calibration_folder), "--limit", "2",
                 "--max-new-tokens", "2"]) == 0
    err = capsys.readouterr().err
    assert f"evaluating {tmp_path / 'lite'} on {calibration_folder} (2 clips)" in err
    assert f"evaluating {tmp_path / 'lite'}:" in err and "Warning" not in err


def test_the_first_remaining_time_estimate_waits_for_a_few_steps():
    """Counted in separate steps: the clips of one batch arrive together and count once."""
    import io

    from lite_whisper.progress import ProgressBar

    stream = io.StringIO()
    with ProgressBar(total=20, desc="evaluating dense", unit="clip", file=stream, mininterval=0, settle=3,
                     gap=0.02) as bar:
        shown = []
        for batch in range(4):
            time.sleep(0.03)
            for _ in range(4):  # a batch of four clips, done at once
                bar.update(1)
                shown.append(bar.format_meter(**bar.format_dict))
    assert all(line.startswith("evaluating dense:") for line in shown)
    with_estimate = ["<" in line for line in shown]  # tqdm writes the remaining time as [elapsed<remaining]
    assert with_estimate == [False] * 8 + [True] * 8, shown  # from the third batch on


def test_help_and_argument_errors_do_not_load_the_heavy_stack():
    """`lite-whisper --help` took ~20 s when every command module imported torch and transformers."""
    code = (
        "import sys\n"
        "from lite_whisper.cli import main\n"
        "for argv in (['--help'], ['compress', '--help'], ['bench', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "assert main(['bench', '--random-weights', 'huge']) == 2\n"
        "assert main(['bench', 'x', '--encoder', 'int8']) == 2\n"
        "print(sorted(name for name in ('torch', 'transformers', 'numpy') if name in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"
    assert "unknown architecture 'huge'" in run.stderr and "only applies with --against" in run.stderr


def test_help_says_what_the_code_does(capsys):
    """Help and reports that had fallen behind the code: export's engines, compress's default rule, 'from ?'."""
    from lite_whisper.cli import build_parser
    from lite_whisper.compression.report import structural_report

    parser = build_parser()
    assert "OpenVINO" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["compress", "--help"])
    assert "robust rule" in capsys.readouterr().out.replace("\n", " ")
    table = structural_report(tiny_whisper_model()).table()
    assert "calibration: 0 clips" in table and "?" not in table
