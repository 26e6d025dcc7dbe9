"""The package's shape: no import cycles, Streamlit and test helpers where they belong,
modules of a size a maintainer can read, and an install that works without sys.path edits."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mrcnn", "studio")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imports_of(path: Path, name: str, top_level_only: bool) -> set[str]:
    """Project modules ``path`` imports (at module level only, or anywhere)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def graph(top_level_only: bool) -> dict[str, set[str]]:
    known = modules()
    edges = {}
    for name, path in known.items():
        targets = {t for t in imports_of(path, name, top_level_only) if t in known}
        edges[name] = targets - {name}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles_at_module_level_or_inside_functions():
    """A module's imports, including the ones deferred into functions, never lead back to it
    (a deferred import that closes a cycle is still a cycle a reader has to untangle)."""
    assert find_cycle(graph(top_level_only=True)) is None
    assert find_cycle(graph(top_level_only=False)) is None


#: The packages of ``mrcnn`` that are not the engine: training and the test helpers.
NOT_ENGINE = ("mrcnn.training", "mrcnn.testing")


def engine_imports_of_training_or_the_app(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{name} -> {target}" for name, targets in edges.items()
                  if name.startswith("mrcnn") and not name.startswith(NOT_ENGINE)
                  for target in targets if target.startswith((*NOT_ENGINE[:1], "studio")))


def test_the_engine_imports_neither_training_nor_the_app_not_even_inside_functions():
    """The engine (every ``mrcnn`` module outside ``mrcnn.training`` and ``mrcnn.testing``)
    runs without the trainer and without the app: no import of either anywhere in its
    code, deferred ones included; training never imports the app."""
    edges = graph(top_level_only=False)
    assert engine_imports_of_training_or_the_app(edges) == []
    assert not [f"{n} -> {t}" for n, ts in edges.items() if n.startswith("mrcnn")
                for t in ts if t.startswith("studio")]
    # The check sees an import inside a function.
    assert engine_imports_of_training_or_the_app(
        {"mrcnn.model": {"mrcnn.training.trainer"}}) == ["mrcnn.model -> mrcnn.training.trainer"]


def test_a_deferred_import_is_found(tmp_path):
    path = tmp_path / "deferred.py"
    path.write_text("def f():\n    from mrcnn.training.trainer import Trainer\n")
    assert "mrcnn.training.trainer" in imports_of(path, "mrcnn.deferred", top_level_only=False)
    assert not imports_of(path, "mrcnn.deferred", top_level_only=True)


def test_streamlit_stays_out_of_the_package_and_test_helpers_out_of_runtime_code():
    for name, path in modules().items():
        imported = {m.split(".")[0] for m in _all_imports(path)}
        if name.startswith("mrcnn"):
            assert "streamlit" not in imported, name
        if not name.startswith(("mrcnn.testing", "mrcnn.training")):
            assert not any(m.startswith("mrcnn.testing") for m in imports_of(path, name, False)), \
                f"{name} imports a test helper"


def _all_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_every_package_index_names_all_its_modules():
    """Each package's docstring is its index: it names every module in it."""
    missing = []
    for init in [ROOT / p / "__init__.py" for p in PACKAGES] + sorted(
            (ROOT / "mrcnn").glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        for path in init.parent.glob("*.py"):
            if path.name not in ("__init__.py", "__main__.py") and path.stem not in doc:
                missing.append(f"{module_name(init)}: {path.stem}")
    assert not missing, missing


def test_no_module_shadows_the_standard_library():
    stdlib = set(sys.stdlib_module_names)
    clashes = [name for name in modules() if name.rsplit(".", 1)[-1] in stdlib]
    assert not clashes, clashes


def test_modules_stay_readable():
    """No module over about 400 lines (the package's own rule of thumb)."""
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text().splitlines())) > 420}
    long.update({p.name: n for p in [ROOT / "app.py", *(ROOT / "pages").glob("*.py")]
                 if (n := len(p.read_text().splitlines())) > 420})
    assert not long, long


def test_no_sys_path_edits_in_tests_or_benchmarks():
    for folder in ("tests", "benchmarks", "mrcnn", "studio", "pages", "docs"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == Path(__file__).resolve():
                continue
            text = path.read_text()
            assert "sys.path.insert" not in text and "sys.path.append" not in text, path


def test_installed_package_has_the_layout_manifest_and_runs_without_the_repository():
    """From another folder (so the repository is not on sys.path), the installed package
    imports, finds its package data and answers ``python -m mrcnn.weights --help``."""
    code = ("import mrcnn.testing.synthetic_weights as s, json; "
            "print(json.loads(s.MANIFEST_PATH.read_text())['num_parameters'])")
    done = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "64158584"
    done = subprocess.run([sys.executable, "-m", "mrcnn.weights", "--help"], cwd="/",
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--check" in done.stdout, done.stderr
