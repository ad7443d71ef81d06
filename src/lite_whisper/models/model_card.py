"""README.md for every folder lite-whisper saves or exports: the model card a hub page shows.

What the card says comes from the folder itself: the compression report that `compress` writes
(method, settings, encoder parameters and FLOPs before and after, calibration, distillation), the
export manifest (files, parity with PyTorch), and measured results that `eval --record` and
`bench --record` add (`lite_whisper_results.json`, each with the command that produced it). Nothing is claimed that the
folder does not hold; where nothing was measured the card says how to measure it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from lite_whisper.lowrank.cost import encoder_flops, encoder_params

CARD_FILE = "README.md"
REPORT_FILE = "compression_report.json"  # what `compress` writes beside the model (compression.report)
RESULTS_FILE = "lite_whisper_results.json"
OPENAI_LICENCE = "apache-2.0"  # what the openai/whisper-* hub cards declare


def licence_of(source: str) -> str:
    """The base model's licence: its own card's front matter when it is a local folder, Whisper's for
    OpenAI's checkpoints and lite-whisper's short names, else "other" (the card tells where to look)."""
    card = Path(source) / CARD_FILE
    if card.is_file():
        found = re.search(r"^license:\s*(\S+)", card.read_text(errors="replace"), re.MULTILINE)
        if found:
            return found.group(1)
    name = source.rsplit("/", 1)[-1]
    if source.startswith("openai/") or re.fullmatch(r"(tiny|base|small|medium|large)(\.en|-v[23](-turbo)?)?", name):
        return OPENAI_LICENCE
    return "other"


def read_results(folder: str | Path) -> list[dict]:
    path = Path(folder) / RESULTS_FILE
    try:
        results = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return []
    return results if isinstance(results, list) else []


def _report(folder: Path) -> dict | None:
    try:
        return json.loads((folder / REPORT_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None


def _compression_section(report: dict | None, model) -> list[str]:
    if report is None:
        params = encoder_params(model)
        kind = "a low-rank encoder" if getattr(model.config, "low_rank_config", None) else "the dense encoder"
        return ["## Compression", "", f"This folder holds {kind} ({params / 1e6:.2f}M encoder parameters, "
                f"{encoder_flops(model) / 1e9:.1f} GFLOPs a 30 s window); no compression report came with it.", ""]
    before, after = report["encoder_params_before"], report["encoder_params_after"]
    flops_before, flops_after = report["encoder_flops_before"], report["encoder_flops_after"]
    lines = ["## Compression", "",
             "The encoder's linears are replaced by two low-rank factors fitted to the principal directions of their "
             "outputs on calibration speech (LiteASR, arXiv 2502.20583; lite-whisper's implementation).", "",
             "| | before | after | ratio |", "|---|---|---|---|",
             f"| encoder parameters | {before / 1e6:.2f}M | {after / 1e6:.2f}M | {after / before:.2f} |",
             f"| encoder FLOPs (30 s window) | {flops_before / 1e9:.1f} G | {flops_after / 1e9:.1f} G | "
             f"{flops_after / flops_before:.2f} |", "",
             f"- rank rule: `{report.get('rank_rule')}`, threshold `{report.get('threshold')}`, ranks in multiples of "
             f"{report.get('rank_multiple')}",
             f"- calibration: {report.get('calibration_clips')} clips from {report.get('calibration_data')}"]
    distillation = report.get("distillation")
    if distillation:
        lines.append(f"- distillation: {distillation.get('steps')} steps towards the dense model's encoder outputs")
    lines.append(f"- lite-whisper {report.get('lite_whisper_version')}, {report.get('wall_seconds', 0):.0f} s to compress")
    return lines + [""]


MEASURED = "## Measured"


def _results_section(results: list[dict]) -> list[str]:
    lines = [MEASURED, ""]
    if results:
        lines += ["| measured | on | result | command |", "|---|---|---|---|"]
        lines += [f"| {r['measure']} | {r['on']} | {r['value']} | `{r['command']}` |" for r in results]
        return lines + [""]
    return lines + ["Nothing measured in this folder yet. Measure accuracy and speed (and record them on this card) with",
                    "", "    lite-whisper eval FOLDER --data DATA --record", "    lite-whisper bench FOLDER --record", ""]


def record_results(folder: str | Path, entries: list[dict]) -> None:
    """Add measured results (`measure`, `on`, `value`, `command`) to FOLDER's results file, replacing earlier
    ones of the same measure on the same data, and to its card's table when it has a card."""
    folder = Path(folder)
    new = {(e["measure"], e["on"]) for e in entries}
    results = [r for r in read_results(folder) if (r.get("measure"), r.get("on")) not in new] + list(entries)
    (folder / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    card = folder / CARD_FILE
    text = card.read_text() if card.is_file() else ""
    if MEASURED in text:
        start = text.index(MEASURED)
        end = text.find("\n## ", start + len(MEASURED))
        section = "\n".join(_results_section(results)).replace("FOLDER", str(folder))
        card.write_text(text[:start] + section + (text[end + 1:] if end >= 0 else ""))


def _parity_section(export: dict | None) -> list[str]:
    lines = []
    if export:
        lines += ["## Export parity", ""]
        parity = export.get("parity", {})
        errors = ", ".join(f"{kind} {parity[f'encoder_relative_error_{kind}']:.1e}"
                           for kind in ("float32", "int8", "bfloat16") if f"encoder_relative_error_{kind}" in parity)
        lines.append(f"- ONNX encoder against PyTorch (relative error): {errors}")
        for kind in ("float32", "int8", "shipped"):
            if f"transcripts_identical_{kind}" in parity:
                clips = len(parity.get("transcripts_pytorch") or parity.get("transcripts_lite_whisper") or [])
                lines.append(f"- greedy transcripts identical to the PyTorch model's ({kind}): "
                             f"{parity[f'transcripts_identical_{kind}']}/{clips} clips")
        lines.append("")
    return lines


_USE = {
    "saved": """```python
import lite_whisper
print(lite_whisper.transcribe("FOLDER", "talk.flac")[0].text)
# or plain transformers: AutoModelForSpeechSeq2Seq.from_pretrained("FOLDER", trust_remote_code=True)
```

```bash
lite-whisper transcribe FOLDER talk.flac
lite-whisper export FOLDER -o FOLDER-export --int8          # ONNX Runtime / OpenVINO + CTranslate2, faster-whisper
lite-whisper export FOLDER -o FOLDER-onnx --format optimum  # optimum, transformers.js
lite-whisper serve FOLDER                                   # OpenAI-compatible /v1/audio/transcriptions
```""",
    "export": """```bash
lite-whisper transcribe FOLDER talk.flac
lite-whisper serve FOLDER
```

```python
from lite_whisper.runtime.faster_whisper import LiteWhisperModel   # faster-whisper's pipeline around it
segments, info = LiteWhisperModel("FOLDER", cpu_threads=2).transcribe("talk.flac", beam_size=1)
```""",
    "optimum-onnx": """Python, optimum (`pip install "optimum-onnx[onnxruntime]"`; it pins transformers < 4.58):

```python
from optimum.onnxruntime import ORTModelForSpeechSeq2Seq
from transformers import AutoProcessor
model = ORTModelForSpeechSeq2Seq.from_pretrained("FOLDER", subfolder="onnx")
processor = AutoProcessor.from_pretrained("FOLDER")
features = processor(samples, sampling_rate=16000, return_tensors="pt").input_features  # 16 kHz float32
print(processor.batch_decode(model.generate(features), skip_special_tokens=True)[0])
```

JavaScript, transformers.js (`npm install @huggingface/transformers`; Node or the browser):

```js
import { pipeline, env } from "@huggingface/transformers";
env.localModelPath = "PARENT";      // the folder that holds FOLDER
env.allowRemoteModels = false;
const asr = await pipeline("automatic-speech-recognition", "NAME", { dtype: "q8" });  // or "fp32"
console.log((await asr(samples16kHz)).text);                   // a Float32Array at 16 kHz
```""",
}


def model_card(model, *, source: str, folder: str | Path, report: dict | None = None, export: dict | None = None,
               results: list[dict] = ()) -> str:
    """The card's text for `model` living in `folder` (see the module's docstring). `report`: its compression
    report (else the one in `source`, when that is a folder that has one)."""
    final = Path(folder)
    kind = "saved" if export is None else ("optimum-onnx" if export.get("format") == "optimum-onnx" else "export")
    if report is None and Path(source).is_dir():
        report = _report(Path(source))
    licence = licence_of(source)
    low_rank = getattr(model.config, "low_rank_config", None) is not None
    title = f"{source} with a low-rank encoder (lite-whisper)" if low_rank else f"{source} (lite-whisper export)"
    front = ["---", f"license: {licence}", f"base_model: {source}", "pipeline_tag: automatic-speech-recognition",
             "tags:", "- whisper", "- lite-whisper", "- low-rank" if low_rank else "- dense"]
    if kind == "optimum-onnx":
        front += ["- onnx", "- transformers.js", "library_name: transformers.js"]
    lines = [*front, "---", "", f"# {title}", ""]
    lines += _compression_section(report, model)
    lines += [line.replace("FOLDER", str(final)) for line in _results_section(list(results))]
    lines += _parity_section(export)
    use = _USE[kind].replace("PARENT", str(final.resolve().parent)).replace("NAME", final.name)
    lines += ["## Use it", "", use.replace("FOLDER", str(final)), ""]
    lines += ["## Licence", "",
              (f"Inherited from the base model ({source}): {licence}." if licence != "other" else
               f"Inherited from the base model ({source}): see its model card."), ""]
    return "\n".join(lines)


def write_model_card(folder: str | Path, model, *, source: str, export: dict | None = None,
                     final: str | Path | None = None) -> Path:
    """Write FOLDER/README.md from what the folder holds; return its path. `final`: where the folder will
    live when it is written into a staging folder first (the card's examples name it)."""
    folder = Path(folder)
    path = folder / CARD_FILE
    path.write_text(model_card(model, source=source, folder=final or folder, report=_report(folder), export=export,
                               results=read_results(folder)))
    return path
