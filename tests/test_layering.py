"""The import graph of genrec_jax (and experiments/): no cycle, and every import goes down.

Layers, lowest first (a module may import its own layer and the ones below):

    0  genrec_jax (the root package), _checks, io, host_allocator, sharding, losses, kernels
    1  data
    2  models
    3  eval
    4  train
    5  experiments

``genrec_jax.losses`` imports nothing else from genrec_jax. The graph is built with ``ast`` from
every ``import`` statement, including those inside functions; an import of a package's name
(``from genrec_jax.data import load_events``) is an edge to the package's ``__init__``, an import
of a submodule (``from genrec_jax.data import sources``) an edge to that submodule.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("genrec_jax", "experiments")
LAYERS = {
    "genrec_jax._checks": 0, "genrec_jax.io": 0, "genrec_jax.host_allocator": 0,
    "genrec_jax.sharding": 0,
    "genrec_jax.losses": 0, "genrec_jax.kernels": 0,
    "genrec_jax.data": 1,
    "genrec_jax.models": 2,
    "genrec_jax.eval": 3,
    "genrec_jax.train": 4,
    "experiments": 5,
}


def module_files(root: pathlib.Path, packages=PACKAGES) -> dict[str, pathlib.Path]:
    """Dotted module name → file, for every ``.py`` file under the given packages."""
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _resolve(name: str, modules) -> str | None:
    """The longest prefix of ``name`` that is a known module (None: not ours)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(root: pathlib.Path, packages=PACKAGES) -> dict[str, dict[str, int]]:
    """``{module: {imported module: line}}`` over the given packages' own modules."""
    modules = module_files(root, packages)
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:                      # relative: from the module's own package
                    anchor = name.split(".")
                    anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                resolved = _resolve(target, modules)
                if resolved is not None and resolved != name:
                    edges.setdefault(resolved, node.lineno)
        graph[name] = edges
    return graph


def layer_of(module: str) -> int:
    if module == "genrec_jax":                      # the root package itself (empty)
        return 0
    key = _resolve(module, LAYERS)
    if key is None:
        raise KeyError(f"module {module} is in no layer: add its package to LAYERS in "
                       f"tests/test_layering.py")
    return LAYERS[key]


def layer_violations(graph) -> list[str]:
    """Every import of a higher layer, and every import of genrec_jax by genrec_jax.losses."""
    bad = []
    for module, edges in sorted(graph.items()):
        for target, line in sorted(edges.items()):
            if layer_of(target) > layer_of(module):
                bad.append(f"{module} (layer {layer_of(module)}) imports {target} "
                           f"(layer {layer_of(target)}) at line {line}")
            elif (module.startswith("genrec_jax.losses")
                  and not target.startswith("genrec_jax.losses")):
                bad.append(f"{module} imports {target} at line {line}: genrec_jax.losses "
                           "imports nothing else from genrec_jax")
    return bad


def find_cycle(graph) -> list[str] | None:
    """One import cycle as ``[a, b, …, a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}                         # 1 on the stack, 2 done
    for start in sorted(graph):
        if start in state:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif child not in state:
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return None


def test_the_repository_imports_go_down_the_layers_without_cycles():
    graph = import_graph(REPO)
    assert "genrec_jax.data.sources" in graph and "genrec_jax.eval.model_eval" in graph
    assert layer_violations(graph) == []
    assert find_cycle(graph) is None
    # The edges this layering was made for.
    assert "genrec_jax.models.functional" in graph["genrec_jax.eval.model_eval"]
    assert "genrec_jax._checks" in graph["genrec_jax.models.rating_baselines"]
    assert "genrec_jax.data.sources" not in graph["genrec_jax.data.download"]


def _tree(tmp_path, files: dict[str, str]) -> pathlib.Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


BASE = {"genrec_jax/__init__.py": "", "genrec_jax/eval/__init__.py": "",
        "genrec_jax/train/__init__.py": "", "genrec_jax/train/state.py": "",
        "genrec_jax/data/__init__.py": "", "experiments/__init__.py": ""}


def test_an_import_of_train_inside_eval_is_reported(tmp_path):
    root = _tree(tmp_path, {**BASE, "genrec_jax/eval/model_eval.py": (
        "import numpy\n\n\ndef f():\n    from genrec_jax.train.state import bind\n")})
    assert layer_violations(import_graph(root)) == [
        "genrec_jax.eval.model_eval (layer 3) imports genrec_jax.train.state (layer 4) at line 5"]


def test_a_cycle_and_a_relative_import_are_found(tmp_path):
    root = _tree(tmp_path, {**BASE,
                            "genrec_jax/data/sources.py": "from genrec_jax.data import download\n",
                            "genrec_jax/data/download.py": "from . import sources\n"})
    graph = import_graph(root)
    assert graph["genrec_jax.data.download"] == {"genrec_jax.data.sources": 1}
    assert find_cycle(graph) == ["genrec_jax.data.download", "genrec_jax.data.sources",
                                 "genrec_jax.data.download"]
    assert layer_violations(graph) == []


def test_losses_may_not_import_the_rest_of_genrec_jax(tmp_path):
    root = _tree(tmp_path, {**BASE, "genrec_jax/losses/__init__.py": "",
                            "genrec_jax/losses/cql.py": "import genrec_jax.sharding\n",
                            "genrec_jax/sharding.py": ""})
    assert layer_violations(import_graph(root)) == [
        "genrec_jax.losses.cql imports genrec_jax.sharding at line 1: genrec_jax.losses imports "
        "nothing else from genrec_jax"]


def test_a_module_outside_every_layer_is_named(tmp_path):
    root = _tree(tmp_path, {**BASE, "genrec_jax/plots.py": "", "genrec_jax/eval/x.py":
                            "import genrec_jax.plots\n"})
    with pytest.raises(KeyError, match="module genrec_jax.plots is in no layer"):
        layer_violations(import_graph(root))
