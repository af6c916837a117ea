"""The package is layered bottom-up (data < models < training < pruning < defenses < attacks < plots < audit <
pipeline < bin): no module imports from a higher layer, not even inside a function, and module-level imports
form no cycle."""
import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "tfprune_mia"
LAYERS = ["data", "models", "training", "pruning", "defenses", "attacks", "plots", "audit", "pipeline", "bin"]


# Top-level modules that belong to a layer rather than to the shared infrastructure.
SAME_LAYER_AS = {"training_batched": "training", "training_callbacks": "training", "distribute": "training",
                 "artifacts": "attacks"}


def layer(module: str) -> int:
    """Shared infrastructure (errors, io, registry, backend, ...) sits below every layer."""
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else ""
    name = SAME_LAYER_AS.get(name, name)
    return LAYERS.index(name) if name in LAYERS else -1


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(part for part in relative.parts if part != "__init__")
        yield name, ast.parse(path.read_text())


def imports(tree, top_level_only=False):
    nodes = tree.body if top_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tfprune_mia"):
            folder = PACKAGE.parent.joinpath(*node.module.split("."))
            submodules = [a.name for a in node.names
                          if (folder / f"{a.name}.py").exists() or (folder / a.name).is_dir()]
            # `from tfprune_mia.attacks import neural` imports the submodule, not the package's own names
            yield from (f"{node.module}.{name}" for name in submodules)
            if len(submodules) < len(node.names):
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.startswith("tfprune_mia"))


def test_no_module_imports_from_a_higher_layer():
    upward = []
    for name, tree in modules():
        if name == "tfprune_mia":
            continue  # the package root re-exports the public surface lazily
        for target in imports(tree):
            if layer(target) > layer(name):
                upward.append(f"{name} -> {target}")
    assert not upward, f"upward imports: {upward}"


def test_module_level_imports_have_no_cycle():
    graph = {name: {t for t in imports(tree, top_level_only=True)} for name, tree in modules()}
    state = {}

    def visit(node, path):
        if state.get(node) == "done":
            return
        if state.get(node) == "active":
            pytest.fail(f"import cycle: {' -> '.join(path + [node])}")
        state[node] = "active"
        for target in graph.get(node, ()):
            visit(target, path + [node])
        state[node] = "done"

    for name in graph:
        visit(name, [])
