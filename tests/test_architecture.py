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
    """module -> [(imported module, at module level)], relative imports resolved. Imports under
    ``if TYPE_CHECKING:`` are types only: they count as module level, and :data:`TYPE_ONLY` lists them."""
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
                if "TYPE_CHECKING" in ast.unparse(node.test):
                    TYPE_ONLY.setdefault(mod, set()).update(
                        _names(n, package) for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(a.name, id(node) in top) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    name = ".".join(base + ([node.module] if node.module else []))
                else:
                    name = node.module or ""
                if node.module or not node.level:  # `from . import x` imports x; its package is already there
                    found.append((name, id(node) in top))
                found += [(f"{name}.{a.name}", id(node) in top) for a in node.names]  # `from . import video`
        out[mod] = found
    return out


def _names(node: ast.Import | ast.ImportFrom, package: str) -> str:
    if isinstance(node, ast.Import):
        return node.names[0].name
    if node.level:
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        return ".".join(base + ([node.module] if node.module else []))
    return node.module or ""


TYPE_ONLY: dict[str, set[str]] = {}
IMPORTS = _imports()
ROAD = [m for m in IMPORTS if not m.startswith(("emolens.training", "emolens.evaluation", "emolens.cli"))
        and m != "emolens.__main__"]
CLI = [m for m in IMPORTS if m == "emolens.cli" or m.startswith("emolens.cli.")]


def _hits(mod: str, prefixes: tuple[str, ...]) -> list[str]:
    return sorted({name for name, _ in IMPORTS[mod] if name.split(".")[0] in prefixes or name.startswith(prefixes)})


def test_the_rules_are_read_from_every_module():
    assert "emolens.recognizer" in ROAD and "emolens.face.detect.centerface" in ROAD and "emolens.server.app" in ROAD
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


def _graph() -> dict[str, set[str]]:
    """module -> the emolens modules it imports, at the top or inside a function (types only left out)."""
    return {m: {n for n, _ in imps if n in IMPORTS and n != m and n not in TYPE_ONLY.get(m, set())}
            for m, imps in IMPORTS.items()}


def _loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan): each is an import loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    loops: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                loops.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return loops


def test_no_import_loops_not_even_through_a_function_level_import():
    assert not _loops(_graph())


def test_the_loop_check_finds_loops():
    """The check itself: a loop made of function-level imports, and one through a package, are found; a name
    imported for a type only is not a loop."""
    assert _loops({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = _graph()
    assert "emolens.results.notebook" in graph["emolens.results.faces"]  # a function-level import counts
    assert "emolens.results.faces" not in graph["emolens.results.draw"]  # draw names Face for its type only
    looped = {**graph, "emolens.results.draw": graph["emolens.results.draw"] | {"emolens.results.faces"}}
    assert ["emolens.results.draw", "emolens.results.faces", "emolens.results.notebook"] in _loops(looped)


def test_the_architecture_document_names_every_top_level_module():
    doc = (PKG.parents[1] / "docs" / "ARCHITECTURE.md").read_text()
    names = {p.stem for p in PKG.glob("*.py") if p.stem not in ("__init__", "__main__")}
    names |= {p.name + "/" for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    for road in ("face", "results", "explain", "cli", "video", "server", "distributed"):  # the roads' own files
        names |= {p.name for p in (PKG / road).glob("*.py") if p.stem != "__init__"}
    assert not [n for n in sorted(names) if f"`{n}" not in doc]
