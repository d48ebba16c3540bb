"""Import layers of `dualipo`: a module imports only from its own layer or a lower one, and no two units (a
package or a top-level module) import each other, directly or through other units.

Layers, lowest first (`LAYER`; a module belongs to the unit of the longest key that names it or a package above
it, so a new module in a package is placed with it, and a new top-level module must be added to `LAYER`):
0 world:    the package root, config, jsonl, devices, video, metrics, losses (pure tensor math like metrics; the
            generators' denoising errors use it), ledger (run records and atomic file helpers: it imports nothing
            of dualipo), accelerate_configs, seeds (every seed stream), toy/
1 models:   generators/, critics/ (but its CLI), model_dirs, published
2 training: checkpoint, optim, engines, trainer, pretrain, preferences, critic_training/
3 loop:     rounds, loop/, ablate, export, report, report_plots, plan, plan_math, plan_models, annotate/ (but
            its command)
4 cli:      cli, __main__, cli_critic (`dualipo critic ...`), annotate/command (`dualipo annotate`)

Every import counts: module-level and inside functions, `from dualipo.x import y` (y a module or a name) and
`import dualipo.x`.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import dualipo

WORLD, MODELS, TRAINING, LOOP, CLI = range(5)
LAYER_NAMES = ("world", "models", "training", "loop", "cli")
LAYER = {
    "dualipo": WORLD, "dualipo.config": WORLD, "dualipo.jsonl": WORLD, "dualipo.devices": WORLD,
    "dualipo.video": WORLD, "dualipo.metrics": WORLD, "dualipo.losses": WORLD, "dualipo.ledger": WORLD,
    "dualipo.accelerate_configs": WORLD, "dualipo.seeds": WORLD, "dualipo.toy": WORLD,
    "dualipo.generators": MODELS, "dualipo.critics": MODELS, "dualipo.model_dirs": MODELS,
    "dualipo.published": MODELS,
    "dualipo.checkpoint": TRAINING, "dualipo.optim": TRAINING, "dualipo.engines": TRAINING,
    "dualipo.trainer": TRAINING, "dualipo.pretrain": TRAINING, "dualipo.preferences": TRAINING,
    "dualipo.critic_training": TRAINING,
    "dualipo.rounds": LOOP, "dualipo.loop": LOOP, "dualipo.ablate": LOOP, "dualipo.ablate_table": LOOP,
    "dualipo.export": LOOP, "dualipo.report": LOOP, "dualipo.report_plots": LOOP, "dualipo.plan": LOOP, "dualipo.plan_math": LOOP,
    "dualipo.plan_models": LOOP, "dualipo.annotate": LOOP,
    "dualipo.cli": CLI, "dualipo.__main__": CLI, "dualipo.cli_critic": CLI, "dualipo.annotate.command": CLI,
}
# Upward imports that stay, as (importing module, imported module), each with its reason. Keep this short: none
# is needed today.
ALLOWED: set[tuple[str, str]] = set()

SRC = Path(dualipo.__file__).parent


def modules(root: Path = SRC) -> dict[str, Path]:
    """Dotted name -> file of every module under `root` (a package is named by its __init__)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int, str]]:
    """(imported dualipo module, line, the import statement) of every import in the module, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            base = ".".join(parts + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        out += [(t, node.lineno, ast.unparse(node)) for t in dict.fromkeys(targets) if t.split(".")[0] == "dualipo"]
    return out


def unit(name: str, layer: dict[str, int] = LAYER) -> str | None:
    """The longest key of `layer` that is `name` or a package above it (the root package's key names its
    __init__ only, so a new top-level module is unassigned); None when unassigned."""
    keys = [k for k in layer if name == k or ("." in k and name.startswith(k + "."))]
    return max(keys, key=len) if keys else None


def unit_graph(mods: dict[str, Path], layer: dict[str, int] = LAYER) -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> the imports that make the edge ('module:line: statement')."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for name, path in mods.items():
        for target, line, text in imports(name, path, set(mods)):
            a, b = unit(name, layer), unit(target, layer)
            if a != b:
                graph[a][b].append(f"{name}:{line}: {text}")
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected groups of more than one unit (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
            if len(group) > 1:
                out.append(sorted(group))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def cycle_report(graph: dict[str, dict[str, list[str]]]) -> list[str]:
    """Per cycle, the imports between its units."""
    return [f"cycle between {', '.join(group)}:\n  " + "\n  ".join(
        line for a in group for b in group if b in graph.get(a, {}) for line in graph[a][b])
        for group in cycles(graph)]


def upward(mods: dict[str, Path], layer: dict[str, int] = LAYER,
           allowed: set[tuple[str, str]] = frozenset()) -> list[str]:
    """Imports from a lower layer into a higher one, not in `allowed`."""
    out = []
    for name, path in mods.items():
        for target, line, text in imports(name, path, set(mods)):
            low, high = layer[unit(name, layer)], layer[unit(target, layer)]
            if high > low and (name, target) not in allowed:
                out.append(f"{name}:{line}: {text} ({LAYER_NAMES[low]} imports {LAYER_NAMES[high]})")
    return out


def test_every_module_has_a_layer_and_every_layer_key_a_module():
    mods = modules()
    assert not [m for m in mods if unit(m) is None], "modules with no layer: add them to LAYER"
    assert not [k for k in LAYER if not any(m == k or m.startswith(k + ".") for m in mods)], "stale LAYER keys"


def test_no_import_cycle_between_units():
    report = cycle_report(unit_graph(modules()))
    assert not report, "\n".join(report)


def test_no_import_from_a_higher_layer():
    bad = upward(modules(), allowed=ALLOWED)
    assert not bad, "\n".join(bad)


def test_allowed_exceptions_still_exist():
    mods = modules()
    found = {(m, t) for m, p in mods.items() for t, _, _ in imports(m, p, set(mods))}
    assert ALLOWED <= found, f"no longer needed, remove from ALLOWED: {ALLOWED - found}"


def test_the_checker_finds_cycles_and_upward_imports(tmp_path):
    pkg = tmp_path / "dualipo"
    (pkg / "low").mkdir(parents=True)
    files = {"__init__.py": "", "low/__init__.py": "", "low/a.py": "from dualipo.mid import f\n",
             "mid.py": "import dualipo.top\n", "top.py": "def g():\n    from dualipo.low import a\n"}
    for rel, text in files.items():
        (pkg / rel).write_text(text)
    layer = {"dualipo": 0, "dualipo.low": 0, "dualipo.mid": 1, "dualipo.top": 2}
    mods = modules(pkg)
    assert set(mods) == {"dualipo", "dualipo.low", "dualipo.low.a", "dualipo.mid", "dualipo.top"}
    graph = unit_graph(mods, layer)
    assert cycles(graph) == [["dualipo.low", "dualipo.mid", "dualipo.top"]]
    assert "dualipo.top:2: from dualipo.low import a" in cycle_report(graph)[0]
    assert upward(mods, layer) == ["dualipo.low.a:1: from dualipo.mid import f (world imports models)",
                                   "dualipo.mid:1: import dualipo.top (models imports training)"]
    assert upward(mods, layer, {("dualipo.low.a", "dualipo.mid"), ("dualipo.mid", "dualipo.top")}) == []
    (pkg / "top.py").write_text("")
    assert cycles(unit_graph(modules(pkg), layer)) == []
