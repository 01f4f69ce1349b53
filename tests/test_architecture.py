"""The package's import graph: no cycles (counting imports inside functions too), and the strategies
(caching, decoding, pruning) never import one another."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "accel3d"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for target in targets:
                if target in modules and target != name and not name.startswith(target + "."):
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


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_in_the_package():
    graph = import_graph()
    assert len(graph) > 40
    # a package __init__ re-exporting its submodules is not a cycle; drop edges from a module to its own package
    cleaned = {m: {t for t in deps if not (t == m.rsplit(".", 1)[0])} for m, deps in graph.items()}
    assert find_cycle(cleaned) is None, " -> ".join(find_cycle(cleaned))


def test_strategies_never_import_one_another():
    graph = import_graph()
    strategies = ("accel3d.caching", "accel3d.decoding", "accel3d.pruning")
    for module, deps in graph.items():
        own = next((s for s in strategies if module == s or module.startswith(s + ".")), None)
        if own:
            others = [d for d in deps if any(d == s or d.startswith(s + ".") for s in strategies if s != own)]
            assert not others, f"{module} imports {others}"
