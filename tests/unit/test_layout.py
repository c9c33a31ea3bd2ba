"""The package's import graph keeps the layout of docs/architecture.md: every arrow points down.

Walks every import in src/supertiny (top-level and inside functions) with ``ast`` and fails on
- a circle of imports;
- an upward import: core/ importing anything but core/, runtime/ anything but core/ and
  runtime/, serve/ or doctor/ importing a stage, anything importing ``cli`` (but
  ``supertiny/__main__.py``);
- a sideways import, one stage importing another, outside ``ALLOWED`` (named public entry
  points only);
- a private name (``_x``, by import or as ``module._x``) taken from a module of another package.

    python -m pytest tests/unit/test_layout.py -q
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "supertiny"

STAGES = ("label", "train", "compress", "evaluate", "report")
"""The stage packages: each may import core/, runtime/ and itself."""
MAY_IMPORT = {
    "core": {"core"},
    "runtime": {"core", "runtime"},
    "serve": {"core", "runtime", "serve"},
    "doctor": {"core", "doctor"},
    **{stage: {"core", "runtime", stage} for stage in STAGES},
}
"""Layer -> the layers it may import. The rest (cli, stages, pipeline, docs, __main__) sit
on top and may import anything but cli. The root package (``supertiny``: ``__version__``) may
be imported by all."""
ALLOWED = {
    ("supertiny.compress.config", "supertiny.train.config", "KdStep"),
    ("supertiny.compress.steps", "supertiny.train.kd", "distill"),
    ("supertiny.evaluate.teacher", "supertiny.label.stage", "run_teacher"),
    ("supertiny.evaluate.teacher", "supertiny.label.config", "load_config"),
}
"""(importing module, imported module, name): the public entry points one stage may take from
another. Compress recovers by the train stage's KD (its step config and ``distill``); eval
measures the teacher as the label stage runs it."""


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    imports: list[tuple[str, str | None, int]] = field(default_factory=list)
    """(imported module, name taken from it or None for the whole module, line)."""
    private_attributes: list[tuple[str, str, int]] = field(default_factory=list)
    """(module bound to a local name, ``_attribute`` read on it, line)."""

    @property
    def package(self) -> str:
        return self.name if self.is_package else self.name.rpartition(".")[0]


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _private(name: str | None) -> bool:
    return bool(name) and name.startswith("_") and not name.startswith("__")


def scan(root: Path) -> dict[str, Module]:
    """Every module under ``root`` (a package folder named like the package), with its imports."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names[name] = Module(name, path, parts[-1] == "__init__")
    for module in names.values():
        _read(module, names)
    return names


def _read(module: Module, modules: dict[str, Module]) -> None:
    tree = ast.parse(module.path.read_text(encoding="utf-8"))
    bound: dict[str, str] = {}  # local name -> the supertiny module it names
    root = module.name.split(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == root:
                    module.imports.append((alias.name, None, node.lineno))
                    if alias.asname:
                        bound[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != root:
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in modules:  # `from package import module`
                    module.imports.append((sub, None, node.lineno))
                    bound[alias.asname or alias.name] = sub
                else:
                    module.imports.append((node.module, alias.name, node.lineno))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in bound
            and _private(node.attr)
        ):
            module.private_attributes.append((bound[node.value.id], node.attr, node.lineno))


def violations(root: Path, allowed: set[tuple[str, str, str]] = ALLOWED) -> list[str]:
    """Every import under ``root`` that breaks the layout, as ``file:line: why`` lines."""
    modules = scan(root)
    root_name = root.name
    problems = []
    for module in modules.values():
        where = f"{module.path.relative_to(root.parent)}"
        mine = _layer(module.name)
        for target, name, line in module.imports:
            theirs = _layer(target)
            what = f"{target}" + (f".{name}" if name else "")
            if target == f"{root_name}.cli" and module.name != f"{root_name}.__main__":
                problems.append(f"{where}:{line}: imports cli ({what})")
            elif mine in MAY_IMPORT and theirs and theirs not in MAY_IMPORT[mine]:
                if mine in STAGES and theirs in STAGES:
                    if (module.name, target, name) not in allowed:
                        problems.append(f"{where}:{line}: sideways, {mine} -> {theirs} ({what})")
                else:
                    problems.append(f"{where}:{line}: upward, {mine} -> {theirs} ({what})")
            if _private(name) and _package_of(target, modules) != module.package:
                problems.append(f"{where}:{line}: private name from another package ({what})")
        for target, attribute, line in module.private_attributes:
            if _package_of(target, modules) != module.package:
                problems.append(
                    f"{where}:{line}: private name from another package ({target}.{attribute})"
                )
    problems += [f"import circle: {' -> '.join(cycle)}" for cycle in cycles(modules)]
    return problems


def _package_of(target: str, modules: dict[str, Module]) -> str:
    known = modules.get(target)
    return known.package if known else target.rpartition(".")[0]


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """The import circles among ``modules`` (strongly connected components, Tarjan), each as
    a path that starts and ends at the same module."""
    graph = {
        name: sorted({t for t, _, _ in m.imports if t in modules and t != name})
        for name, m in modules.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(_path(sorted(component), graph))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def _path(component: list[str], graph: dict[str, list[str]]) -> list[str]:
    """A circle through the component's first module, for the error message."""
    members = set(component)
    start = component[0]
    path = [start]
    seen = {start}
    while True:
        nxt = next(n for n in graph[path[-1]] if n in members and (n == start or n not in seen))
        path.append(nxt)
        if nxt == start:
            return path
        seen.add(nxt)


# ----- the package ---------------------------------------------------------------------------


def test_the_package_keeps_its_layout():
    problems = violations(SRC)
    assert not problems, "\n".join(problems)


def test_the_walk_sees_every_package_and_function_level_imports():
    modules = scan(SRC)
    layers = {_layer(name) for name in modules}
    assert {"core", "runtime", *STAGES, "serve", "doctor", "docs"} <= layers
    label_stage = modules["supertiny.label.stage"]
    assert any(t == "supertiny.label.endpoint" for t, _, _ in label_stage.imports)
    steps = modules["supertiny.compress.steps"]
    assert ("supertiny.train.kd", "distill") in {(t, n) for t, n, _ in steps.imports}  # in a def


# ----- the checker, on a tiny tree -----------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "supertiny"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()
    return root


def test_a_clean_tree_passes(tmp_path):
    root = _tree(
        tmp_path,
        {
            "core/a.py": "X = 1\n",
            "runtime/r.py": "from supertiny.core.a import X\n",
            "train/kd.py": "from supertiny.runtime import r\ndef distill(): ...\n",
            "compress/steps.py": "def f():\n    from supertiny.train.kd import distill\n",
            "cli.py": "from supertiny.compress import steps\n",
            "__main__.py": "from supertiny.cli import main\n",
        },
    )
    assert violations(root, {("supertiny.compress.steps", "supertiny.train.kd", "distill")}) == []


def test_each_kind_of_violation_is_found(tmp_path):
    root = _tree(
        tmp_path,
        {
            "core/a.py": "def f():\n    from supertiny.train import kd\n",  # upward, in a def
            "runtime/r.py": "from supertiny.serve.app import App\n",  # upward
            "serve/app.py": "App = 1\n",
            "train/kd.py": "def distill(): ...\ndef _helper(): ...\n",
            "compress/steps.py": "from supertiny.train.kd import distill\n",  # not allowed
            "compress/prune.py": "from supertiny.train import kd\nkd._helper()\n",  # sideways, private
            "label/p.py": "from supertiny.label import q\n",
            "label/q.py": "import supertiny.label.p\n",  # circle p -> q -> p
            "evaluate/e.py": "from supertiny.runtime.r import _secret\n",  # private
            "report/page.py": "from supertiny import cli\n",  # cli
            "cli.py": "",
        },
    )
    problems = violations(root, allowed=set())
    text = "\n".join(problems)
    assert "core/a.py:2: upward, core -> train" in text
    assert "runtime/r.py:1: upward, runtime -> serve" in text
    assert "compress/steps.py:1: sideways, compress -> train (supertiny.train.kd.distill)" in text
    assert "compress/prune.py:1: sideways, compress -> train" in text
    assert (
        "compress/prune.py:2: private name from another package (supertiny.train.kd._helper)"
        in text
    )
    assert "evaluate/e.py:1: private name from another package" in text
    assert "report/page.py:1: imports cli" in text
    assert "import circle: supertiny.label.p -> supertiny.label.q -> supertiny.label.p" in text
    assert len(problems) == 8, text


def test_the_allow_list_names_single_public_entry_points(tmp_path):
    root = _tree(
        tmp_path,
        {
            "train/kd.py": "def distill(): ...\ndef run(): ...\n",
            "compress/steps.py": "from supertiny.train.kd import distill, run\n",
        },
    )
    allowed = {("supertiny.compress.steps", "supertiny.train.kd", "distill")}
    assert violations(root, allowed) == [
        "supertiny/compress/steps.py:1: sideways, compress -> train (supertiny.train.kd.run)"
    ]
