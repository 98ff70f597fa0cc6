"""`ticketlab demo`: the embedded default, end to end, with nothing to download.

Generates the synthetic scenes, runs IMP with the lite Faster R-CNN preset (dense, then 50% and 75%
of the scope pruned, rewinding to init), prints the summary table and writes the report (`ticketlab report`) of the run.
Everything lands under OUT; running it again resumes where it stopped.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Optional

from ticketlab.analysis.report import write_report
from ticketlab.config import load_config
from ticketlab.data.synth import SynthConfig, generate_synthetic
from ticketlab.lottery.imp import run_imp
from ticketlab.stop import StopFlag, nothing_to_checkpoint

PRESET = "demo.yaml"
COLUMNS = ["level", "sparsity_scope", "sparsity_network", "bbox_AP", "bbox_AP50", "seconds"]


def demo_config_path() -> Path:
    return Path(str(files("ticketlab") / "presets" / PRESET))


def run_demo(out: Path, *, print_table, stop: Optional[StopFlag] = None) -> list[dict]:
    out = Path(out)
    data_dir, run_dir = out / "data", out / "run"
    if not (data_dir / "summary.json").is_file():  # written last: its presence means the set is complete
        print(f"generating synthetic scenes in {data_dir} …")
        with nothing_to_checkpoint(stop):  # a signal stops at once: the rerun writes the set again
            generate_synthetic(data_dir, SynthConfig())
    cfg = load_config(demo_config_path(), [f"data.root={data_dir}"])
    print(f"run dir: {run_dir}")
    rows = run_imp(cfg, run_dir, stop=stop)
    report = write_report([run_dir], out / "report")
    print()
    print_table(rows, COLUMNS)
    print(f"\nrun dir: {run_dir} (summary.csv, level_NN/…)")
    print(f"report:  {report.index}")
    return rows
