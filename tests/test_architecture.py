"""The import rules of docs/ARCHITECTURE.md, read from the code itself (ast, nothing imported): the recognising
road never imports torch, training or evaluation; evaluation runs on ONNX (no torch) and takes only the dataset
readers from training; the command line reaches training and torch only inside the verbs that need them; and
no two modules import each other."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "emolens"


def _module(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, list[tuple[str, bool]]]:
    """module -> [(imported module, at module level)], relative imports resolved."""
    out: dict[str, list[tuple[str, bool]]] = {}
    for path in sorted(PKG.rglob("*.py")):
        mod = _module(path)
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        found = []
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body}
        for node in tree.body:  # imports under `if TYPE_CHECKING:` count as module level too
            if isinstance(node, ast.If):
                top |= {id(n) for n in node.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(a.name, id(node) in top) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    name = ".".join(base + ([node.module] if node.module else []))
                else:
                    name = node.module or ""
                found.append((name, id(node) in top))
                found += [(f"{name}.{a.name}", id(node) in top) for a in node.names]  # `from . import video`
        out[mod] = found
    return out


IMPORTS = _imports()
ROAD = [m for m in IMPORTS if not m.startswith(("emolens.training", "emolens.evaluation", "emolens.cli"))
        and m != "emolens.__main__"]
CLI = [m for m in IMPORTS if m == "emolens.cli" or m.startswith("emolens.cli.")]


def _hits(mod: str, prefixes: tuple[str, ...]) -> list[str]:
    return sorted({name for name, _ in IMPORTS[mod] if name.split(".")[0] in prefixes or name.startswith(prefixes)})


def test_the_rules_are_read_from_every_module():
    assert "emolens.recognizer" in ROAD and "emolens.detect.centerface" in ROAD and "emolens.server.app" in ROAD
    assert len(IMPORTS) > 40 and ("emolens.classify", True) in IMPORTS["emolens.recognizer"]


def test_the_recognising_road_never_imports_torch_training_or_evaluation():
    bad = {m: _hits(m, ("torch", "torchvision", "emolens.training", "emolens.evaluation")) for m in ROAD}
    assert not {m: h for m, h in bad.items() if h}


def test_evaluation_runs_on_onnx_and_takes_only_the_dataset_readers_from_training():
    for mod in (m for m in IMPORTS if m.startswith("emolens.evaluation")):
        assert not _hits(mod, ("torch", "torchvision")), mod
        training = {n for n in _hits(mod, ("emolens.training",)) if n != "emolens.training"}
        assert all(n.startswith(("emolens.training.data", "emolens.training.votes")) for n in training), (mod, training)


def test_the_command_line_reaches_training_and_torch_only_inside_the_verbs():
    assert len(CLI) > 5
    for mod in CLI:
        top = [name for name, at_top in IMPORTS[mod] if at_top]
        assert not [n for n in top if n.split(".")[0] in ("torch", "torchvision") or n.startswith("emolens.training")]


def test_no_file_of_the_command_line_passes_300_lines():
    long = {m: n for m in CLI if (n := len((PKG.parent / (m.replace(".", "/") + (
        "/__init__.py" if m == "emolens.cli" else ".py"))).read_text().splitlines())) > 300}
    assert not long


def test_no_two_modules_import_each_other():
    """(Package __init__ files re-export their modules and are left out.)"""
    graph = {m: {n for n, _ in imps if n in IMPORTS and n != m} for m, imps in IMPORTS.items()}
    packages = {m for m in IMPORTS if (PKG.parent / m.replace(".", "/") / "__init__.py").is_file()}
    pairs = sorted((a, b) for a in graph for b in graph[a] if a < b and a in graph.get(b, set())
                   and a not in packages and b not in packages)
    assert not pairs


def test_the_architecture_document_names_every_top_level_module():
    doc = (PKG.parents[1] / "docs" / "ARCHITECTURE.md").read_text()
    names = {p.stem for p in PKG.glob("*.py") if p.stem not in ("__init__", "__main__")}
    names |= {p.name + "/" for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert not [n for n in sorted(names) if f"`{n}" not in doc]
