"""The house rule behind the registries (checked on the source, as test_layers.py checks imports):
nothing outside tasks/ compares a task name, nothing outside models/ compares a model-family name.
Consumers read what a task or family declares (tasks.base.Task, models.spec.ModelFamily) instead,
so a new task or family needs no edit anywhere else."""

import ast
from pathlib import Path

from ticketlab.registry import MODEL_FAMILIES, TASKS

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ticketlab"
RULES = {  # what is compared → (the names, the only package allowed to compare them)
    "task": (set(TASKS.names()), "tasks"),
    "family": (set(MODEL_FAMILIES.names()), "models"),
}


def _name_of(node: ast.AST) -> str | None:
    """`task` for `task`, `cfg.task`, `self.run.task`; None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _literals(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for e in node.elts for s in _literals(e)]
    return []


def violations(tree: ast.AST, kind: str, names: set[str]) -> list[str]:
    """`kind == 'x'`, `kind in ('x', …)`, a registered name compared with == / != or looked up in a
    literal list of names, and `kind.startswith(…)`. A membership test of a name in a registry or a
    mapping (`task in TASKS`, `"keypoints" in target`) is a lookup, not a comparison."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for left, op, right in zip([node.left, *node.comparators], node.ops, node.comparators):
                pair = (left, right)
                if isinstance(op, (ast.Eq, ast.NotEq)):
                    hits = [s for o in pair for s in _literals(o) if s in names]
                    named = any(_name_of(o) == kind for o in pair) and any(_literals(o) for o in pair)
                elif isinstance(op, (ast.In, ast.NotIn)):
                    hits = [s for s in _literals(right) if s in names] if not isinstance(right, ast.Constant) else []
                    named = _name_of(left) == kind and bool(_literals(right))
                else:
                    continue
                if hits or named:
                    found.append(f"line {node.lineno}: compares a {kind}{' with ' + hits[0] if hits else ''}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("startswith", "endswith") and _name_of(node.func.value) == kind):
            found.append(f"line {node.lineno}: {kind}.{node.func.attr}(…)")
    return found


def test_no_task_or_family_name_comparison_outside_its_home():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        tree = ast.parse(path.read_text())
        for kind, (names, home) in RULES.items():
            if rel.parts[0] != home:
                bad += [f"{rel}: {v}" for v in violations(tree, kind, names)]
    assert not bad, "\n".join(bad)


def test_the_check_catches_what_it_should():
    names = {"detection", "moco"}
    source = ("if cfg.task != 'detection': pass\n"   # 1: caught
              "x = name in ('moco', 'y')\n"           # 2: caught
              "ok = fmt == 'coco'\n"                  # 3: not a task name
              "m.task.startswith('de')\n"             # 4: caught
              "y = task in TASKS\n"                   # 5: a registry lookup
              "z = 'moco' in target\n"                # 6: a key lookup
              "w = task == 'new_one'\n")              # 7: caught, even for a name not registered
    caught = violations(ast.parse(source), "task", names)
    assert [c.split(":")[0] for c in caught] == ["line 1", "line 2", "line 4", "line 7"]
