"""A transfer-matrix directory (`ticketlab transfer-matrix`) in the report: paper 002's transfer curves
(Figs. 3-5 against the source mask's sparsity, Fig. 9 against the weights it keeps), the table of cells and
the universal verdict (the sparsity range of the abstract, "59.04% to 96.48%"), each headed
"Paper <paper> — …" when the spec names the figure or table it reproduces.

Everything is read from what the matrix wrote: `matrix.json` (marks the directory, holds `paper`),
`matrix.csv` (one line per row × target: mean, std, matching, the source level and its mask) and
`universal.csv` (per run source).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ticketlab.analysis.page import Block
from ticketlab.analysis.transfer_figures import plot_transfer_curves
from ticketlab.atomic import atomic_write_bytes
from ticketlab.errors import TicketlabError
from ticketlab.rundir import MATRIX_FILE


@dataclass(frozen=True)
class MatrixDir:
    path: Path
    paper: Optional[str]
    rows: list[dict]          # matrix.csv
    universal: list[dict]     # universal.csv (empty without run sources)

    @property
    def targets(self) -> list[str]:
        return list(dict.fromkeys(r["target"] for r in self.rows))


def is_matrix(path: Path) -> bool:
    return (Path(path) / MATRIX_FILE).is_file()


def _csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_matrix_dir(path: Path) -> MatrixDir:
    path = Path(path)
    try:
        meta = json.loads((path / MATRIX_FILE).read_text())
        rows = _csv(path / "matrix.csv")
        universal = _csv(path / "universal.csv") if (path / "universal.csv").is_file() else []
        paper = meta.get("paper")
    except (OSError, ValueError, AttributeError, csv.Error) as e:
        raise TicketlabError(f"{path}: not a transfer-matrix directory written by `ticketlab transfer-matrix` "
                             f"({e.__class__.__name__})") from None
    if not rows:
        raise TicketlabError(f"{path}/matrix.csv: no cells; rerun `ticketlab transfer-matrix`")
    return MatrixDir(path, paper, rows, universal)


def _pct(value: str) -> Optional[float]:
    return None if value in ("", None) else round(100 * float(value), 2)


def _cells_table(m: MatrixDir) -> tuple[list[str], list[list]]:
    header = ["source", "baseline", "target", "metric", "mean", "std", "seeds", "matching", "source level",
              "source sparsity %", "source kept", "network sparsity %"]
    body = [[r["source"], r["baseline"], r["target"], r["metric"], float(r["mean"]), float(r["std"]), int(r["seeds"]),
             "yes" if r["matching"] == "True" else "no", r["source_level"], _pct(r["source_sparsity"]),
             r["source_kept"], _pct(r["sparsity_network"])] for r in m.rows]
    return header, body


def _universal_table(m: MatrixDir) -> tuple[list[str], list[list]]:
    header = ["source", "baseline", "levels", "universal levels", "universal up to level",
              "its scope sparsity %", "first failing level (targets)"]
    body = [[u["source"], u["baseline"], u["levels"], u["universal_levels"] or "none",
             u["sparsest_universal_level"] or "—", _pct(u["sparsest_universal_sparsity"]),
             f"{u['first_failing_level']} ({u['first_failing_targets']})" if u.get("first_failing_level") else "—"]
            for u in m.universal]
    return header, body


def matrix_sections(out: Path, m: MatrixDir, written: list[Path]) -> list[Block]:
    tag = "".join(c if c.isalnum() else "_" for c in m.path.name) + "_"
    head = f"Paper {m.paper} — " if m.paper else f"Transfer matrix {m.path.name}: "
    data = f"{tag}matrix.csv"
    written.append(out / data)
    atomic_write_bytes(written[-1], (m.path / "matrix.csv").read_bytes())
    seeds = sorted({int(r["seeds"]) for r in m.rows})
    blocks = []
    if m.universal:
        for x, what in (("sparsity", "the source mask's scope sparsity"), ("kept", "the weights the source mask keeps")):
            name = f"{tag}transfer_curves_{x}.png"
            written.append(plot_transfer_curves(m.rows, m.targets, out / name, x=x))
            blocks.append(Block(
                heading=f"{head}transfer curves against {what}", image=name, data=[data],
                caption=(f"Per target ({', '.join(m.targets)}): each run source's metric after fine-tuning against "
                         f"{what}, mean over {'/'.join(map(str, seeds))} seed(s), band ±1 sample std; dashed: the "
                         "source's dense baseline (the same θ_p, paper 002 Eq. 1); filled: matching it "
                         "(≥ its mean − 1 std).")))
    blocks.append(Block(heading=f"{head}cells", data=[data], table=_cells_table(m),
                        paragraphs=[f"{m.path}: every row (source level or baseline) × target, the target's metric "
                                    "at the cell's last level over seeds; matching against the row's baseline."]))
    if m.universal:
        blocks.append(Block(heading=f"{head}universal verdict", table=_universal_table(m), paragraphs=[
            "A source level is universal when it matches on every target (paper 002 §3); a source is universal "
            "up to the sparsest level at which it and every less sparse level are, the sparsity the paper quotes "
            "as universally transferable (59.04%–96.48%; §4 A1 reads each task's curve up to its first failure)."]))
    return blocks


def split_matrices(paths: Sequence[Path]) -> tuple[list[Path], list[MatrixDir]]:
    """The given paths without the transfer-matrix directories, and those directories loaded."""
    rest, matrices = [], []
    for p in paths:
        if is_matrix(p):
            matrices.append(load_matrix_dir(p))
        else:
            rest.append(p)
    return rest, matrices
