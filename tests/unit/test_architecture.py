"""The package's layers (docs/architecture.md): no module imports one above its own layer, and no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import airflow_provider_oxen

PACKAGE = Path(airflow_provider_oxen.__file__).parent

# Lowest first. A module may import its own layer or any below it; the emulator stands apart.
LAYERS: dict[str, int] = {
    # core: wire models, errors, pure bookkeeping; no HTTP client, no operator
    "": 0,
    "exceptions": 0,
    "get_provider_info": 0,
    "models": 0,
    "redact": 0,
    "pricing": 0,
    "inputs": 0,
    "ledger": 0,
    "recovery": 0,
    "results": 0,
    "waiting": 0,
    "media": 0,
    "review_form": 0,
    "provenance": 0,
    "lineage": 0,
    # the one place that speaks HTTP to Oxen
    "hooks": 1,
    # what runs on a hook: waiting in the triggerer, moving bytes to S3, links
    "triggers": 2,
    "transfers": 2,
    "links": 2,
    # what a DAG author instantiates
    "operators": 3,
    "sensors": 3,
    "transfers.s3": 3,
    "plan": 3,
    "__main__": 3,
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int:
    for name in (module, module.split(".")[0]):
        if name in LAYERS:
            return LAYERS[name]
    raise AssertionError(f"{module} has no layer: add it to LAYERS and docs/architecture.md")


def _short(name: str) -> str:
    return name.removeprefix("airflow_provider_oxen").lstrip(".")


def _imports() -> dict[str, set[str]]:
    modules = {_module(p) for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        module = _module(path)
        if module.startswith("emulator"):
            continue
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names] or [node.module]
                names = [
                    n if n.removeprefix("airflow_provider_oxen.") in modules else node.module for n in names
                ]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name == "airflow_provider_oxen" or name.startswith("airflow_provider_oxen."):
                    targets.add(_short(name))
        graph[module] = targets - {module}
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
        for module, targets in graph.items()
        for target in targets
        if _layer(target) > _layer(module)
    )


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for target in sorted(graph.get(module, ())):
            cycle = visit(target, [*path, module])
            if cycle:
                return cycle
        done.add(module)
        return None

    return next((cycle for module in sorted(graph) if (cycle := visit(module, []))), None)


def test_no_module_imports_from_a_layer_above_its_own_and_there_is_no_import_cycle() -> None:
    graph = _imports()
    assert upward_imports(graph) == []
    assert find_cycle(graph) is None


def test_the_checks_report_an_upward_import_and_a_cycle() -> None:
    graph = {"hooks.oxen": {"operators.generate"}, "operators.generate": {"hooks.oxen"}}
    assert upward_imports(graph) == ["hooks.oxen (layer 1) imports operators.generate (layer 3)"]
    assert find_cycle(graph) == ["hooks.oxen", "operators.generate", "hooks.oxen"]
