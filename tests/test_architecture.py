"""The package's architecture, read from its source with ``ast``: no import cycles, and the strategies
never import one another, nor do the shared layers below them (``core``, ``geometry``, ``kernels``) or the
models and integrations they attach to import any strategy. The integrations import their real library
(hy3dgen, TRELLIS, SAM 3D Objects, diffusers) only inside functions, never when accel3d is imported.

A strategy is a subpackage that declares an accelerator (a class derived from ``AcceleratorConfig`` in its
``config.py``), so a new strategy folder is checked without editing this file. Every form of import
counts: ``import a.b``, ``from a import b``, relative imports resolved against the importing module's
package, imports inside functions, and ``importlib.import_module("...")`` with a literal name.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "accel3d"
SHARED = ("core", "geometry", "kernels")  # what the strategies build on: may import no strategy
ATTACHED_TO = ("models", "integrations")  # the pipelines and real-model stages strategies attach to: may import none either
REAL_LIBRARIES = ("hy3dgen", "trellis", "sam3d", "diffusers")  # top-level package names, "sam3d" also for "sam3d_objects"


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of the package at ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported_names(module: str, path: Path) -> set[str]:
    """Every dotted name that ``module`` (the file at ``path``) imports, relative imports made absolute.

    ``from p import x`` yields both ``p`` and ``p.x`` (x may be a submodule); names outside the package are
    kept too, the callers filter.
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    raise ValueError(f"{path}:{node.lineno}: relative import beyond the top-level package")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names if alias.name != "*")
        elif isinstance(node, ast.Call) and _called_name(node.func) in ("import_module", "__import__"):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def subpackage_of(name: str, top: str) -> str | None:
    """``caching`` for ``accel3d.caching.hash_table`` (top ``accel3d``); None outside a subpackage."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == top else None


def strategies(root: Path) -> set[str]:
    """The subpackages of the package at ``root`` that declare an accelerator: a ``config.py`` with a class
    derived from ``AcceleratorConfig`` (the one declaration each accelerator has)."""
    found = set()
    for path in sorted(root.glob("*/config.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(_called_name(base) == "AcceleratorConfig" for base in node.bases):
                found.add(path.parent.name)
    return found


def layering_violations(root: Path, shared: tuple[str, ...] = SHARED + ATTACHED_TO) -> list[str]:
    """One line per import that breaks the rules: a strategy importing another strategy, or a shared
    subpackage (or a model family, an integration) importing any strategy."""
    strategy_names = strategies(root)
    violations = []
    for module, path in modules(root).items():
        own = subpackage_of(module, root.name)
        if own in strategy_names:
            forbidden, why = strategy_names - {own}, f"strategy '{own}' imports another strategy"
        elif own in shared:
            forbidden, why = strategy_names, f"shared '{own}' imports a strategy"
        else:
            continue
        names = {n for n in imported_names(module, path) if subpackage_of(n, root.name) in forbidden}
        for name in sorted(names):
            if not any(name.startswith(other + ".") for other in names):  # `from a.b import c`: report a.b once
                violations.append(f"{module} imports {name}: {why}")
    return violations


def import_time_imports(path: Path) -> set[str]:
    """The dotted names a module imports when it is imported: its module-level statements, including those
    inside module-level ``if``/``try``/``with`` blocks and class bodies, but not function bodies nor the body
    of ``if TYPE_CHECKING:`` (relative imports are left out: they name the package's own modules)."""
    names: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module)
            elif isinstance(node, ast.If):
                test = node.test
                type_checking = getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING"
                visit(node.orelse if type_checking else node.body + node.orelse)
            elif isinstance(node, ast.Try | ast.With | ast.ClassDef):
                blocks = [node.body] + ([node.orelse, node.finalbody] if isinstance(node, ast.Try) else [])
                blocks += [handler.body for handler in node.handlers] if isinstance(node, ast.Try) else []
                for block in blocks:
                    visit(block)

    visit(ast.parse(path.read_text(), filename=str(path)).body)
    return names


def eager_library_imports(root: Path, folder: str = "integrations", libraries: tuple[str, ...] = REAL_LIBRARIES) -> list[str]:
    """One line per module of ``root/folder`` that imports one of ``libraries`` when it is imported."""
    found = []
    for module, path in modules(root).items():
        if subpackage_of(module, root.name) != folder:
            continue
        for name in sorted(import_time_imports(path)):
            if name.split(".")[0].startswith(libraries):
                found.append(f"{module} imports {name} at import time")
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a module's own parent packages left out)."""
    known = modules(root)
    graph: dict[str, set[str]] = {m: set() for m in known}
    for name, path in known.items():
        for target in imported_names(name, path):
            if target in known and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


# ---------------------------------------------------------------- the checker on packages made for it


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for rel, source in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


DECLARES = """
from fakepkg.core.config import AcceleratorConfig


class {name}Config(AcceleratorConfig):
    NAME = "{name}"
"""


def _fake_package(tmp_path: Path, **extra: str) -> Path:
    files = {
        "fakepkg/__init__.py": "",
        "fakepkg/core/__init__.py": "",
        "fakepkg/core/config.py": "class AcceleratorConfig:\n    NAME = ''\n",
        "fakepkg/core/stats.py": "from .config import AcceleratorConfig  # inside core: fine\n",
        "fakepkg/geometry/__init__.py": "from ..core import stats\n",
        "fakepkg/alpha/__init__.py": "from .accelerator import Accelerator\n",
        "fakepkg/alpha/config.py": DECLARES.format(name="alpha"),
        "fakepkg/alpha/accelerator.py": "from fakepkg.core import stats\nfrom .config import alphaConfig\n\nConfig = alphaConfig\n",
        "fakepkg/beta/__init__.py": "",
        "fakepkg/beta/config.py": DECLARES.format(name="beta"),
        "fakepkg/beta/accelerator.py": "from ..core import stats\nfrom ..geometry import grid\n",
        "fakepkg/jobs/__init__.py": "from fakepkg import alpha, beta  # not shared, not a strategy: may use both\n",
    }
    return _write_package(tmp_path, {**files, **extra}) / "fakepkg"


def test_the_checker_finds_strategies_by_their_declarations(tmp_path):
    root = _fake_package(tmp_path)
    assert strategies(root) == {"alpha", "beta"}
    assert layering_violations(root) == []


def test_the_checker_reports_a_relative_cross_strategy_import(tmp_path):
    root = _fake_package(tmp_path, **{"fakepkg/beta/helpers.py": "from ..alpha.accelerator import Accelerator\n"})
    assert layering_violations(root) == ["fakepkg.beta.helpers imports fakepkg.alpha.accelerator: strategy 'beta' imports another strategy"]


def test_the_checker_reports_imports_inside_functions_and_from_the_parent_package(tmp_path):
    late = """
    def later():
        from .. import alpha
        return alpha
    """
    dynamic = """
    import importlib


    def load():
        return importlib.import_module("fakepkg.beta.accelerator")
    """
    extra = {"fakepkg/beta/late.py": late, "fakepkg/alpha/dynamic.py": dynamic, "fakepkg/kernels/__init__.py": "from fakepkg import beta\n"}
    assert layering_violations(_fake_package(tmp_path, **extra)) == [
        "fakepkg.alpha.dynamic imports fakepkg.beta.accelerator: strategy 'alpha' imports another strategy",
        "fakepkg.beta.late imports fakepkg.alpha: strategy 'beta' imports another strategy",
        "fakepkg.kernels imports fakepkg.beta: shared 'kernels' imports a strategy",
    ]


def test_relative_imports_resolve_against_the_package_of_the_module(tmp_path):
    root = _fake_package(tmp_path, **{"fakepkg/alpha/deep/__init__.py": "from . import x\nfrom ...beta import y\n"})
    init = root / "alpha" / "deep" / "__init__.py"
    assert imported_names("fakepkg.alpha.deep", init) == {"fakepkg.alpha.deep", "fakepkg.alpha.deep.x", "fakepkg.beta", "fakepkg.beta.y"}
    module = root / "alpha" / "accelerator.py"
    assert "fakepkg.core" in imported_names("fakepkg.alpha.accelerator", module)


def test_the_checker_finds_a_library_imported_at_import_time_only(tmp_path):
    eager = """
    import json

    import diffusers.models
    from sam3d_objects.pipeline import InferencePipeline

    try:
        import trellis
    except ImportError:
        trellis = None


    class Stage:
        from hy3dgen import shapegen
    """
    lazy = """
    from typing import TYPE_CHECKING

    if TYPE_CHECKING:
        from diffusers import UNet2DConditionModel


    def load(path) -> "UNet2DConditionModel":
        from diffusers import UNet2DConditionModel
        import trellis

        return UNet2DConditionModel.from_pretrained(path)
    """
    extra = {"fakepkg/integrations/__init__.py": "", "fakepkg/integrations/eager.py": eager, "fakepkg/integrations/lazy.py": lazy}
    assert eager_library_imports(_fake_package(tmp_path, **extra)) == [
        "fakepkg.integrations.eager imports diffusers.models at import time",
        "fakepkg.integrations.eager imports hy3dgen at import time",
        "fakepkg.integrations.eager imports sam3d_objects.pipeline at import time",
        "fakepkg.integrations.eager imports trellis at import time",
    ]


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# ---------------------------------------------------------------- accel3d itself


def test_the_strategies_of_accel3d_are_found():
    found = strategies(ROOT)
    assert found == {"caching", "decoding", "pruning"}  # discovery cannot silently find nothing, nor a shared layer


def test_the_core_imports_nothing_of_accel3d_outside_the_core():
    """No climb back up: the protocol, stacks and configs know no strategy, pipeline, job or benchmark."""
    graph = import_graph()
    assert {"accel3d.core.stack", "accel3d.core.config", "accel3d.core.flow_stage"} <= set(graph)
    outside = sorted(
        f"{m} imports {t}" for m, deps in graph.items() if m.startswith("accel3d.core") for t in deps if not t.startswith("accel3d.core")
    )
    assert outside == []


def test_no_strategy_imports_another_and_the_shared_layers_import_none():
    assert layering_violations(ROOT) == []


def test_the_integrations_import_their_libraries_only_inside_functions():
    assert {"accel3d.integrations.hunyuan3d", "accel3d.integrations.diffusers"} <= set(modules(ROOT))  # the check reads files
    assert eager_library_imports(ROOT) == []


def test_no_import_cycles_in_the_package():
    graph = import_graph()
    assert {"accel3d.core.stack", "accel3d.caching.accelerator", "accel3d.decoding.accelerator"} <= set(graph)
    assert any(t.startswith("accel3d.core.") for t in graph["accel3d.caching.accelerator"])  # edges, not only nodes
    # a package __init__ re-exporting its submodules is not a cycle; drop edges from a module to its own package
    cleaned = {m: {t for t in deps if not (t == m.rsplit(".", 1)[0])} for m, deps in graph.items()}
    assert find_cycle(cleaned) is None, " -> ".join(find_cycle(cleaned))
