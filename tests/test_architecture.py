"""The package's shape, from an AST walk of its imports: the sub-packages are
layers, no module imports from a layer above its own, there is no import
cycle, and only configs/kinds.py reads a config's model kind."""

import ast
import glob
import os

from helpers import REPO

PACKAGE = os.path.join(REPO, "vnca_tf")
# Lowest first; a module imports only from its own package or a lower layer.
LAYERS = {
    "common": 1,
    "configs": 1,
    "data": 2,
    "models": 3,
    "training": 4,
    "evaluation": 4,
    "serving": 5,
    "loading": 6,
    "__init__": 7,
}


def _module_of(path):
    return os.path.relpath(path, REPO)[:-3].replace(os.sep, ".").removesuffix(".__init__")


def _imports():
    """{module: the vnca_tf modules it imports}, at any depth of its code."""
    graph = {}
    for path in glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True):
        module = _module_of(path)
        with open(path) as f:
            tree = ast.parse(f.read())
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name.startswith("vnca_tf")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vnca_tf"):
                # "from vnca_tf.x import y" imports vnca_tf.x.y if that is a module.
                for alias in node.names:
                    candidate = f"{node.module}.{alias.name}"
                    is_module = any(
                        os.path.exists(os.path.join(REPO, *candidate.split(".")) + end)
                        for end in (".py", os.sep + "__init__.py")
                    )
                    found.add(candidate if is_module else node.module)
        graph[module] = found - {module}
    return graph


def _layer(module):
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"], (parts + [""])[1]


def test_no_module_imports_from_a_layer_above_its_own():
    graph = _imports()
    assert len(graph) > 40 and set(LAYERS) - {"__init__"} <= {
        m.split(".")[1] for m in graph if "." in m
    }
    for module, imported in graph.items():
        layer, package = _layer(module)
        for other in imported:
            other_layer, other_package = _layer(other)
            assert other_package == package or other_layer < layer or (module == "vnca_tf"), (
                f"{module} (layer {layer}) imports {other}"
            )


def test_there_is_no_import_cycle():
    graph = _imports()
    state = {}

    def visit(module, path):
        state[module] = "open"
        for other in sorted(graph.get(module, ())):
            if other not in graph:
                continue
            assert state.get(other) != "open", " -> ".join(path + [other])
            if other not in state:
                visit(other, path + [other])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def _tests_the_kind(node) -> bool:
    """Whether an AST node compares a config's decoder or architecture."""
    if not isinstance(node, ast.Compare):
        return False
    operands = [node.left, *node.comparators]
    return any(
        isinstance(o, ast.Attribute) and o.attr in ("decoder", "architecture") for o in operands
    ) or any(
        isinstance(o, ast.Constant) and o.value in ("doubling", "non_doubling", "baseline")
        for o in operands
    )


def test_only_the_kinds_test_a_configs_model_kind():
    # A model kind answers for itself: config.decoder and config.architecture
    # are compared in configs/kinds.py and nowhere else (package, scripts,
    # benchmarks).
    testers = set()
    for path in glob.glob(os.path.join(REPO, "**", "*.py"), recursive=True):
        if os.sep + "." in path or os.sep + "tests" + os.sep in path:
            continue
        with open(path) as f:
            if any(_tests_the_kind(node) for node in ast.walk(ast.parse(f.read()))):
                testers.add(os.path.relpath(path, REPO))
    assert testers == {os.path.join("vnca_tf", "configs", "kinds.py")}
