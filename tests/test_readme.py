"""Every Python block of the README runs as written (its commented alternatives too), on real tiny.en and real speech.

Only what would be slow is made smaller: clip counts, distillation steps. The paths are the README's own,
relative to the repository's folder: the blocks run in a scratch folder that sits beside a link to the
speech data, so `../shared/speech/...` resolves there as it does for a reader.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.integration

# what the README would do at full size -> the same at a size a test affords
SMALLER = [("limit=100", "limit=8"), ("limit=20", "limit=3"), ("processor, 167)", "processor, 8)"),
           ("steps=128", "steps=2"), ('splits/dev.txt")', 'splits/dev.txt", limit=3)')]


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def smaller(code: str) -> str:
    for old, new in SMALLER:
        code = code.replace(old, new)
    return code


def uncommented(code: str) -> str:
    """The block's commented alternatives (`#   code`), as the code they show."""
    return "\n".join(line[4:] for line in code.splitlines() if line.startswith("#   "))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, speech_dir):
    """tmp/work, with tmp/shared/speech -> the speech data: `../shared/speech` from work is the data."""
    root = tmp_path_factory.mktemp("readme")
    (root / "shared").mkdir()
    (root / "shared" / "speech").symlink_to(speech_dir.resolve())
    (root / "work").mkdir()
    return root / "work"


def run(code: str, cwd: Path, block_lite_whisper: bool = False) -> str:
    prelude = "import sys; sys.modules['lite_whisper'] = None\n" if block_lite_whisper else ""
    result = subprocess.run([sys.executable, "-c", prelude + code], cwd=cwd, capture_output=True, text=True,
                            timeout=900, env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_readme_has_the_blocks_this_test_knows():
    blocks = python_blocks()
    assert len(blocks) == 4
    assert "lw.compress" in blocks[0] and "trust_remote_code" in blocks[1] and "LiteWhisperModel" in blocks[2]
    assert "OpenAI(base_url=" in blocks[3]
    assert "distill(" in uncommented(blocks[0]) and "probe_features" in uncommented(blocks[0])


def test_the_library_example_and_its_alternatives_run(workdir):
    block = python_blocks()[0]
    out = run(smaller(block) + "\n" + smaller(uncommented(block)) + "\nprint(report.budget['achieved'])\n", workdir)
    lines = out.strip().splitlines()
    assert "encoder parameters" in out and (workdir / "tiny.en-lite" / "model.safetensors").exists()
    assert "country" in out.lower()  # jfk.flac: "... ask not what your country can do for you ..."
    assert float(lines[-1]) <= 0.75  # the size-targeted alternative met its budget


def test_the_saved_folder_runs_without_lite_whisper(workdir):
    if not (workdir / "tiny.en-lite").exists():
        pytest.skip("needs the folder the library example saves (test_the_library_example_and_its_alternatives_run)")
    out = run(python_blocks()[1], workdir, block_lite_whisper=True)
    assert len(out.split()) > 5  # a LibriSpeech sentence


def test_the_exported_folder_example_runs(workdir):
    if not (workdir / "tiny.en-lite").exists():
        pytest.skip("needs the folder the library example saves (test_the_library_example_and_its_alternatives_run)")
    export = subprocess.run([sys.executable, "-m", "lite_whisper", "export", "tiny.en-lite", "-o", "tiny.en-lite-export",
                             "--int8", "--int8-max-error", "none", "--parity-clips", "1"],
                            cwd=workdir, capture_output=True, text=True, timeout=900)
    assert export.returncode == 0, export.stderr[-3000:]
    out = run(smaller(python_blocks()[2]), workdir)
    assert "country" in out.lower()


def test_the_openai_client_example_runs_against_a_server(workdir):
    """The server block, against `lite-whisper serve tiny.en` on a free port instead of 8000."""
    from http_server import free_port

    from lite_whisper.benchmark.loadtest import wait_until_ready

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "lite_whisper", "serve", "tiny.en", "--port", str(port)],
                              cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}")
        out = run(python_blocks()[3].replace("127.0.0.1:8000", f"127.0.0.1:{port}"), workdir)
    finally:
        server.terminate()
        server.wait(60)
    assert "country" in out.lower() and "(0.0, " in out
