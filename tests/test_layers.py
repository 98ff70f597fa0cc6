"""DESIGN.md's house rule: each layer imports only the layers below it (checked on the source)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ticketlab"
# top to bottom; the shared foundations (config, path_keys, registry, rundir, atomic, errors, yaml_file, stop) sit under everything
LAYERS = ["cli", "deploy", "lottery", "analysis", "train", "tasks", "models", "data", "sparsity", "foundation"]
FOUNDATION = {"config", "path_keys", "registry", "rundir", "atomic", "errors", "yaml_file", "stop", "__init__", "__main__"}


def layer_of(module: str) -> str:
    first = module.split(".")[0]
    return "foundation" if first in FOUNDATION else first


def test_each_layer_imports_only_layers_below_it():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("")
        here = layer_of(".".join(rel.parts))
        if rel.parts[0] == "__main__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ticketlab."):
                names = [node.module.removeprefix("ticketlab.")]
            elif isinstance(node, ast.Import):
                names = [a.name.removeprefix("ticketlab.") for a in node.names if a.name.startswith("ticketlab.")]
            for name in names:
                there = layer_of(name)
                if LAYERS.index(there) < LAYERS.index(here):
                    bad.append(f"{rel}: imports {name} ({there} is above {here})")
    assert not bad, "\n".join(bad)
