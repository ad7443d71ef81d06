"""The package's layout holds: no import cycle between modules or rooms (subpackages), imports inside
functions only where they must be (optional dependencies, the command line), and the files every
saved folder ships stay self-contained."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lite_whisper"

# Imported inside functions on purpose: optional dependencies (extras), and what the command line
# loads only when a command runs.
OPTIONAL = {
    "datasets",  # the `datasets` extra (hf: dataset specs)
    "matplotlib", "matplotlib.pyplot",  # the `plot` extra
    "openvino",  # the `deploy` extra; without it there is no bfloat16 encoder
    "lite_whisper.runtime.exported",  # the `deploy` extra: ONNX Runtime, CTranslate2, faster-whisper
    "ctranslate2", "faster_whisper", "lite_whisper.runtime.hybrid", "lite_whisper.runtime.faster_whisper_engine",
    "lite_whisper.runtime.encoders",
    "lite_whisper.runtime.onnx_encoder", "lite_whisper.runtime.openvino_encoder",
    # installed always, imported only when needed: PyAV for files libsndfile cannot read, Silero VAD for audio
    # over 30 s (importing faster-whisper loads CTranslate2)
    "av", "faster_whisper.vad",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports(path: Path):
    """(imported module, inside a function?) for every lite_whisper import and every import of `path`."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    inside = {id(node) for function in ast.walk(tree) if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
              for node in ast.walk(function) if isinstance(node, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in inside
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full if full in MODULES else base), id(node) in inside


def resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def graph(room_of=lambda module: module) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets = edges.setdefault(room_of(name), set())
        for imported, _ in imports(path):
            target = resolve(imported) if imported.startswith("lite_whisper") else None
            if target not in (None, "lite_whisper") and room_of(target) != room_of(name):
                targets.add(room_of(target))
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(edges):
        if node not in index:
            visit(node)
    return found


def room(module: str) -> str:
    """lite_whisper.compression.compress -> lite_whisper.compression; top-level modules are rooms of their own."""
    return ".".join(module.split(".")[:2])


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back():
    edges = graph()
    assert len(edges) > 60 and "lite_whisper.runtime.pytorch" in edges["lite_whisper.api"]
    assert cycles(edges) == []


def test_no_room_imports_itself_back():
    edges = graph(room)
    assert "lite_whisper.transcription" in edges["lite_whisper.runtime"]
    assert cycles(edges) == []


# The README's layout, from the bottom up: each room imports only rooms before it and the top-level utilities.
ORDER = ["data", "lowrank", "models", "calibration", "compression", "transcription", "runtime", "deploy", "api",
         "evaluation", "benchmark", "experiments", "serving", "cli", "__main__"]
UTILITIES = ["files", "memory", "progress", "distributed", "export_manifest"]


def test_each_room_imports_only_the_rooms_below_it():
    edges = graph(room)
    rooms = {name.removeprefix("lite_whisper.") for name in edges} - {"lite_whisper"}
    assert rooms == set(ORDER) | set(UTILITIES)  # a new room finds its place in the README and here
    for utility in UTILITIES:
        assert edges[f"lite_whisper.{utility}"] == set(), utility
    for index, name in enumerate(ORDER):
        allowed = {f"lite_whisper.{other}" for other in ORDER[:index] + UTILITIES}
        assert edges[f"lite_whisper.{name}"] <= allowed, (name, edges[f"lite_whisper.{name}"] - allowed)


def test_imports_inside_functions_are_optional_dependencies_or_the_command_line():
    misplaced = [
        f"{name}: {imported}" for name, path in MODULES.items() if not name.startswith("lite_whisper.cli")
        for imported, inside in imports(path) if inside and imported not in OPTIONAL
    ]
    assert misplaced == []


def test_the_shipped_files_are_self_contained_and_short():
    """Saved folders carry the format (config, modules, plain forward), readable in one sitting."""
    from lite_whisper.lowrank.checkpoint import SHIPPED_FILES

    assert sorted(path.name for path in SHIPPED_FILES) == ["configuration_lite_whisper.py", "modeling_lite_whisper.py"]
    for path in SHIPPED_FILES:
        outside = {imported.split(".")[0] for imported, _ in imports(path)} - {"__future__", "re", "torch", "transformers"}
        assert outside <= {"lite_whisper"} and all(
            imported.startswith("lite_whisper.lowrank.configuration_lite_whisper")
            for imported, _ in imports(path) if imported.startswith("lite_whisper")), path.name  # the sibling only
        assert len(path.read_text().splitlines()) < 260, path.name
