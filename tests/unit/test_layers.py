"""The layers of docs/architecture.md, enforced: imports go one way, from the edge down.

Read from the source with ``ast``, so a deferred import counts as much as a top-level one.
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

import taxi_duration

PACKAGE = Path(taxi_duration.__file__).parent

# Bottom to top, as docs/architecture.md draws them: a module imports its own layer or below.
LAYERS: dict[str, tuple[str, ...]] = {
    "plain data": (
        "choices", "spec_fields", "specs", "months", "settings", "environment", "errors", "cpus",
        "processes",
    ),
    "steps": (
        "ingest", "prepare", "checks", "cache", "features", "models", "linear", "evaluate",
        "promote", "tune", "predict", "backtest", "charts", "distributed", "schedule",
        "fingerprint", "summary", "monitor", "trip_requests",
    ),  # features: the package and every module in it
    "tracking": ("tracking", "pyfunc_model"),  # tracking: the package and every module in it
    "operations": ("stack", "alerts", "serve"),  # stack: the package and every module in it
    "orchestration": ("flows",),  # the package and every module in it
    "entry points": ("cli", "printers"),
}  # fmt: skip
# The one import that goes up, deferred to the call: a --train-path file is checked with the
# spec, by ingest's parquet check (pyarrow loads only when a file is given).
UPWARD = {("spec_fields", "ingest")}
# Where the orchestrator and the tracker may be imported (deferred in cli.py: logging and the
# temporary server; alerts.py defines a Prefect block, the server imports it as a collection).
LIBRARY_IMPORTERS = {
    "prefect": ("flows", "alerts", "cli"),
    "mlflow": ("tracking", "pyfunc_model"),
}


def _modules() -> dict[str, Path]:
    """Every module of the package, by its name below ``taxi_duration`` (``flows.train``)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:  # the package's own __init__ holds the version only
            modules[".".join(parts)] = path
    return modules


def _imported(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, at any depth: top level, in a function, or
    for the type checker only. A deferred import changes when a module loads, not which
    module depends on which, so it counts for the layers and for cycles alike."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: a relative import"  # the package uses none
            base = node.module or ""
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from taxi_duration import x`` is x)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imported(path):
            package, _, rest = imported.partition(".")
            if package == "taxi_duration" and rest in modules and rest != name:
                targets.add(rest)
        graph[name] = targets
    return graph


def _layer(module: str) -> int:
    for rank, members in enumerate(LAYERS.values()):
        if module in members or module.split(".")[0] in members:
            return rank
    raise AssertionError(f"{module} is in no layer: add it to docs/architecture.md and LAYERS")


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        _layer(module)


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = {
        (module, target)
        for module, targets in _graph().items()
        for target in targets
        if _layer(target) > _layer(module)
    }
    assert upward == UPWARD


def test_the_package_has_no_import_cycle() -> None:
    try:
        order = list(graphlib.TopologicalSorter(_graph()).static_order())
    except graphlib.CycleError as error:
        # graphlib lists each module before the one it imports: reversed, arrows say "imports".
        pytest.fail(f"import cycle: {' -> '.join(reversed(error.args[1]))}")
    assert len(order) == len(_modules())


def test_prefect_and_mlflow_are_imported_only_where_the_docs_say() -> None:
    for module, path in _modules().items():
        libraries = {name.split(".")[0] for name in _imported(path)}
        for library, importers in LIBRARY_IMPORTERS.items():
            if library in libraries:
                assert module.split(".")[0] in importers, f"{module} imports {library}"


def test_importing_the_steps_loads_neither_prefect_nor_mlflow() -> None:
    """The steps and the plain data below them, in one fresh interpreter (their libraries
    take seconds to load): nothing there may pull in the orchestrator or the tracker."""
    below = (*LAYERS["plain data"], *LAYERS["steps"])
    # Every module of a package too (features/): importing a package loads none of them.
    below_tracking = [module for module in _modules() if module.split(".")[0] in below]
    code = (
        "import importlib, sys\n"
        f"for name in {below_tracking!r}:\n"
        "    importlib.import_module('taxi_duration.' + name)\n"
        "print(*sorted({name.split('.')[0] for name in sys.modules} & {'prefect', 'mlflow'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"loaded: {result.stdout.strip()}"
