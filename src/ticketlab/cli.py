"""The `ticketlab` command: parses arguments, calls the layers below, prints, exits.

No logic of its own. A `TicketlabError` (bad config, data, checkpoint, mask, run dir) is printed as
one line and exits with status 2; `--debug` shows the traceback instead. A failed file-system call on
a path the user gave (a file where a directory goes, a directory where a file goes) is one line naming
the path, also status 2. SIGTERM, SIGUSR1 and Ctrl-C (SIGINT) make the training commands checkpoint at
the next step boundary, and every command exits with status 75 (`stop.RESUMABLE`) and one line.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from ticketlab.errors import TicketlabError
from ticketlab.stop import RESUMABLE, Stopped, ignore_signals, stop_on_signals


def _config_keys_help() -> str:
    from ticketlab.config import describe_fields

    rows = describe_fields()
    width = max(len(k) for k, _, _ in rows)
    lines = [f"  {k:<{width}}  {h} [default: {d}]" for k, d, h in rows]
    return "config keys (YAML, or --set key=value):\n" + "\n".join(lines)


def _print_table(rows: list[dict], columns: list[str]) -> None:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4f}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


def summary_columns(rows: list[dict]) -> list[str]:
    cols = ["level", "sparsity_scope", "sparsity_network"]
    metric_keys = [k for k in (rows[0] if rows else {}) if k not in cols and k not in
                   ("kept_scope", "scope_size", "steps", "seconds")]
    return cols + metric_keys[:4] + ["seconds"]


# -- commands ------------------------------------------------------------------------------------


def cmd_find(args) -> int:
    from ticketlab.config import load_config
    from ticketlab.lottery.imp import run_imp
    from ticketlab.train.distributed import env_dist

    cfg = load_config(args.config, args.set)
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    main = env_dist().is_main  # under torchrun only rank 0 prints
    if main:
        print(f"run dir: {out}")
    rows = run_imp(cfg, out, stop=args.stop)
    if not main:
        return 0
    print()
    _print_table(rows, summary_columns(rows))
    print(f"\nsummary: {out / 'summary.csv'}")
    return 0


def _launch_settings(args, base):
    from dataclasses import replace

    given = {k: getattr(args, k) for k in ("workers", "slurm", "partition", "time_min", "gpus_per_cell")
             if getattr(args, k) is not None}
    return replace(base, **given)


def cmd_sweep(args) -> int:
    from ticketlab.lottery.plan import format_plan
    from ticketlab.lottery.study import open_study, run_study, run_unit

    out = Path(args.out) if args.out else Path("runs") / Path(args.study).stem
    if args.plan:
        print("\n".join(format_plan(open_study(Path(args.study), out).plan())))
        return 0
    if args.cell:
        run_unit(open_study(Path(args.study), out), args.cell, stop=args.stop)
        return 0
    print(f"study dir: {out}")
    sr = open_study(Path(args.study), out)
    cells = run_study(Path(args.study), out, stop=args.stop, launch=_launch_settings(args, sr.study.launch),
                      metric=args.metric)
    failed = [c for c in cells if c.get("error")]
    print(f"\n{len(cells)} cells; aggregate: {out / 'aggregate.csv'}; report: ticketlab report {out} --out DIR")
    if failed:
        raise TicketlabError(f"{len(failed)} of {len(cells)} cells did not finish ({failed[0]['name']}: "
                             f"{failed[0]['error']}); rerun the sweep to retry them")
    return 0


def cmd_branch(args) -> int:
    from ticketlab.lottery.branches import run_branch

    out, metrics = run_branch(Path(args.level_dir), args.name, fraction=args.fraction, seed=args.seed,
                              copies=args.copies, points=args.points, bn_batches=args.bn_batches, stop=args.stop)
    _print_table([metrics], [k for k, v in metrics.items() if k not in ("kept_scope", "scope_size")
                             and not isinstance(v, (dict, list))])
    print(f"\nbranch dir: {out}")
    return 0


def cmd_controls(args) -> int:
    from ticketlab.lottery.controls import CONTROLS, parse_list, run_controls

    rows = run_controls(Path(args.run_dir), levels=parse_list(args.levels, "levels", int),
                        names=parse_list(args.only, "only") or CONTROLS,
                        fraction=args.fraction, seed=args.seed, stop=args.stop)
    columns = list(dict.fromkeys(k for r in rows for k in r if k not in ("kept_scope", "scope_size")))
    _print_table(rows, columns)
    return 0


def cmd_eval(args) -> int:
    from ticketlab.lottery.evaluate import evaluate_level

    metrics = evaluate_level(Path(args.level_dir), save_detections=args.save_detections)
    for k, v in metrics.items():
        print(f"{k}: {v:.6f}" if isinstance(v, float) else f"{k}: {v}")
    if args.save_detections:
        print(f"detections: {args.save_detections}")
    return 0


def cmd_info(args) -> int:
    target = Path(args.target)
    if target.is_dir():
        from ticketlab.lottery.info import level_report

        report = level_report(target)
        rows = report.to_rows()
        _print_table([r for r in rows if r["kind"] == "tensor"],
                     ["name", "group", "shape", "kept", "sparsity", "out_channels", "kernels", "zero_kernels"])
        print()
        _print_table([r for r in rows if r["kind"] != "tensor"], ["name", "numel", "kept", "sparsity"])
        print(f"\nscope sparsity {report.scope_sparsity:.4f} ({report.scope_kept}/{report.scope_numel} kept), "
              f"network sparsity {report.network_sparsity:.4f}")
        return 0
    from ticketlab.config import load_config
    from ticketlab.lottery.info import group_table

    rows, total, scope_size = group_table(load_config(target, args.set))
    _print_table(rows, ["group", "params", "percent", "in_scope", "prunable %"])
    print(f"\n{total} parameters; scope: {scope_size} ({100.0 * scope_size / total:.2f}% of the network)")
    print("prunable %: the group's conv/linear weights left after prune.exclude, as % of the network "
          "(paper 001 Table 3's Param %)")
    return 0


def cmd_report(args) -> int:
    from ticketlab.analysis.report import write_report
    from ticketlab.deploy.latency import report_timer

    result = write_report([Path(p) for p in args.run_dirs], Path(args.out), level=args.level, metric=args.metric,
                          latency=report_timer())
    print(f"mask figures: level {result.level} ({result.level_reason})")
    print(f"wrote {len(result.files)} files; open {result.index}")
    return 0


def cmd_data_synth(args) -> int:
    import yaml

    from ticketlab.config import from_dict
    from ticketlab.data.synth import SynthConfig, generate_synthetic

    given = {k: yaml.safe_load(v) for k, v in vars(args).items() if k.startswith("synth_") and v is not None}
    cfg = from_dict(SynthConfig, {k.removeprefix("synth_"): v for k, v in given.items()}, "synth.")
    cfg.validate()
    result = generate_synthetic(Path(args.out), cfg)
    train = result["summary"]["train"]
    print(f"wrote {result['train']} and {result['val']} ({cfg.n_train} + {cfg.n_val} images)")
    print(f"  training objects per class: {train['per_class']}")
    print(f"  training objects per size: {train['per_size']}")
    print(f"  semantic masks (data.format: voc_seg): {Path(args.out) / 'SegmentationClass'}")
    return 0


def cmd_data_synth_crops(args) -> int:
    import yaml

    from ticketlab.config import from_dict
    from ticketlab.data.synth import SynthConfig
    from ticketlab.data.synth.crops import CropConfig, write_crops

    def given(prefix: str) -> dict:
        return {k.removeprefix(prefix): yaml.safe_load(v) for k, v in vars(args).items()
                if k.startswith(prefix) and v is not None}

    synth = from_dict(SynthConfig, given("synth_"), "synth.")
    crops = from_dict(CropConfig, given("crops_"), "crops.")
    summary = write_crops(Path(args.out), synth, crops)
    for split, counts in summary["counts"].items():
        print(f"{split}: {sum(counts.values())} crops {counts}")
    print(f"image folder: {args.out} (data.format: imagefolder, data.root: {args.out})")
    return 0


def cmd_transfer_matrix(args) -> int:
    from ticketlab.lottery.matrix import load_spec, matrix_cells, matrix_groups, run_matrix, run_matrix_unit
    from ticketlab.lottery.plan import format_plan, plan_rows

    spec = load_spec(Path(args.spec))
    out = Path(args.out or spec.out or Path("runs") / Path(args.spec).stem)
    if args.plan:
        cells = matrix_cells(spec, out)
        print("\n".join(format_plan(plan_rows(cells, matrix_groups(cells, out)))))
        return 0
    if args.cell:
        run_matrix_unit(spec, out, args.cell, stop=args.stop)
        return 0
    rows = run_matrix(spec, out, stop=args.stop, launch=_launch_settings(args, spec.launch))
    print()
    _print_table(rows, ["source", "target", "metric", "mean", "std", "matching", "sparsity_network"])
    print(f"\ntable: {out / 'matrix.md'} ({out / 'matrix.csv'}, {out / 'matrix.png'})")
    return 0


def cmd_demo(args) -> int:
    from ticketlab.lottery.demo import run_demo

    run_demo(Path(args.out), print_table=_print_table, stop=args.stop)
    return 0


def cmd_export(args) -> int:
    from ticketlab.deploy import export_level

    r = export_level(Path(args.level_dir), args.format, Path(args.out) if args.out else None,
                     compact=args.compact, csr_box_head=args.csr_box_head)
    if r.compaction is not None:
        rows = [vars(row) for row in r.compaction.rows if row.kept < row.channels]
        if rows:
            _print_table(rows, ["producer", "channels", "kept", "unread", "zero", "folded"])
        c = r.compaction
        print(f"compaction: {c.channels_removed} hidden channels removed in {len(rows)} of {len(c.rows)} layers; "
              f"parameters {c.params_before} → {c.params_after}")
    if r.csr_layers:
        print(f"CSR weights: {', '.join(r.csr_layers)}")
    print(f"checked with {r.runtime}: max |output − masked model| = {r.max_abs_diff:.3g}")
    for note in r.notes:
        print(f"note: {note}")
    print(f"wrote {r.path} ({r.format}, {r.bytes} bytes)")
    return 0


# Commands that train: a signal makes them checkpoint at the next step boundary (the others stop at once).
CHECKPOINTING = (cmd_find, cmd_sweep, cmd_branch, cmd_controls, cmd_transfer_matrix, cmd_demo)


# -- parser --------------------------------------------------------------------------------------

METRIC_HELP = ("metric of the matching verdicts: any metric the levels recorded (e.g. bbox_AP of a Mask R-CNN "
               "run); default: the task's headline")


def _add_launch_arguments(p: argparse.ArgumentParser) -> None:
    """--plan, --cell and where cells run (each overrides the study file's `launch:`)."""
    from ticketlab.config import describe_fields
    from ticketlab.lottery.launch import LaunchConfig

    helps = {k: h for k, _, h in describe_fields(LaunchConfig)}
    p.add_argument("--plan", action="store_true", help="print the cells, what they share and their cost in "
                   "dense-training units, and exit")
    p.add_argument("--cell", metavar="NAME", help="run only this cell (or shared dense level) here")
    p.add_argument("--workers", type=int, help=helps["workers"])
    p.add_argument("--slurm", action="store_const", const=True, help=helps["slurm"])
    p.add_argument("--partition", help=helps["partition"])
    p.add_argument("--time-min", type=int, dest="time_min", help=helps["time_min"])
    p.add_argument("--gpus-per-cell", type=int, dest="gpus_per_cell", help=helps["gpus_per_cell"])


def build_parser() -> argparse.ArgumentParser:
    from ticketlab.registry import BRANCHES, EXPORT_FORMATS

    parser = argparse.ArgumentParser(prog="ticketlab", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks for errors")

    p = sub.add_parser("find", parents=[common], help="run or resume IMP", epilog=_config_keys_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--out", help="run directory (default: runs/<config name>); rerun to resume")
    p.set_defaults(func=cmd_find)

    p = sub.add_parser("sweep", parents=[common], help="run or resume a grid of IMP runs (a study) → cells/<name>/")
    p.add_argument("study", help="STUDY.yaml: config, set (overrides), grid (axis: [values]), preset")
    p.add_argument("--out", help="study directory (default: runs/<study name>); rerun to resume")
    p.add_argument("--metric", help=METRIC_HELP)
    _add_launch_arguments(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("branch", parents=[common], help="control experiment on a finished level → level_NN/branch_<name>/")
    p.add_argument("level_dir", help="RUN_DIR/level_NN")
    p.add_argument("name", help="one of " + ", ".join(BRANCHES.names()))
    p.add_argument("--fraction", type=float, help="perturb: fraction of the mask's ones (and as many zeros) to flip; "
                   "early_bird: the draw's fraction of dense training (level_01 only)")
    p.add_argument("--seed", type=int, help="seed of the random draw; instability: the first copy's data seed "
                   "(the others count up) (default: the run's seed + 1)")
    p.add_argument("--copies", type=int, help="instability: copies trained with different data orders (default 2)")
    p.add_argument("--points", type=int, help="instability, interpolate_next: evenly spaced points on the path, "
                   "ends included (default 11)")
    p.add_argument("--bn-batches", type=int, default=10, help="instability, interpolate_next: training batches "
                   "over which BatchNorm statistics are recomputed at each point (default 10)")
    p.set_defaults(func=cmd_branch)

    p = sub.add_parser("controls", parents=[common], help="paper 002 Fig. 8's mask controls (complement, random, "
                       "perturbed) of every pruned level, each a resumable branch")
    p.add_argument("run_dir", help="RUN_DIR")
    p.add_argument("--levels", metavar="1,3,5", help="levels to control (default: every finished level ≥ 1)")
    p.add_argument("--only", metavar="NAME,...", help="controls to run, among complement, random_mask, perturb, "
                   "reinit (default: complement,random_mask,perturb)")
    p.add_argument("--fraction", type=float, default=0.1, help="perturb: fraction of each tensor's kept weights "
                   "flipped to pruned, with as many pruned ones flipped to kept (default 0.1)")
    p.add_argument("--seed", type=int, help="seed of the random draws (default: the run's seed + 1)")
    p.set_defaults(func=cmd_controls)

    p = sub.add_parser("eval", parents=[common], help="re-evaluate a finished level")
    p.add_argument("level_dir", help="RUN_DIR/level_NN (or a branch dir)")
    p.add_argument("--save-detections", metavar="FILE.json", help="write the COCO results file (detection tasks)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("info", parents=[common], help="module groups of a config's model, or the sparsity report of a level")
    p.add_argument("target", help="CONFIG.yaml or RUN_DIR/level_NN")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("report", parents=[common], help="tables, figures and index.html from run directories")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run or study directories (seeds of one config "
                   "form a series; a study stands for its finished cells)")
    p.add_argument("--out", required=True, help="output directory for index.html, PNG figures and CSV tables")
    p.add_argument("--level", type=int, help="level of the mask figures (default: the sparsest level at which "
                   "every series still matches, or the last level when no pruned level does)")
    p.add_argument("--metric", help=METRIC_HELP)
    p.set_defaults(func=cmd_report)

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("synth", parents=[common], help="write the synthetic COCO-format scenes")
    p.add_argument("--out", required=True, help="output directory")
    from ticketlab.config import describe_fields
    from ticketlab.data.synth import SynthConfig

    for key, default, help_text in describe_fields(SynthConfig):
        p.add_argument("--" + key.replace("_", "-"), dest="synth_" + key, metavar="VALUE",
                       help=f"{help_text} [default: {default}]")
    p.set_defaults(func=cmd_data_synth)

    p = data.add_parser("synth-crops", parents=[common],
                        help="write the synthetic scenes' objects as an image folder (train/<class>/*.png, val/...)")
    p.add_argument("--out", required=True, help="output directory")
    from ticketlab.data.synth.crops import CropConfig

    for prefix, cls in (("crops_", CropConfig), ("synth_", SynthConfig)):
        for key, default, help_text in describe_fields(cls):
            p.add_argument("--" + key.replace("_", "-"), dest=prefix + key, metavar="VALUE",
                           help=f"{help_text} [default: {default}]")
    p.set_defaults(func=cmd_data_synth_crops)


    p = sub.add_parser("transfer-matrix", parents=[common],
                       help="masks from several sources × several target tasks → one table (rerun to resume)")
    p.add_argument("spec", help="YAML spec: targets (configs), sources (overrides), seeds; see docs/transfer.md")
    p.add_argument("--out", help="output directory (default: the spec's out, else runs/<spec name>)")
    _add_launch_arguments(p)
    p.set_defaults(func=cmd_transfer_matrix)

    p = sub.add_parser("demo", parents=[common], help="the embedded default, end to end (rerun to resume)")
    p.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("export", parents=[common], help="a finished level as a state_dict, ONNX or TorchScript file",
                       description="Export a level, checked against the masked model on a validation input. "
                       "state_dict keeps torchvision's names (a width-1 ResNet or R-CNN loads into the stock "
                       "torchvision model with strict=True); a model.width other than 1 gives a state_dict of "
                       "that width, which fits the same architecture but not the stock one.")
    p.add_argument("level_dir", help="RUN_DIR/level_NN (or a branch dir)")
    p.add_argument("--format", required=True, help="one of " + ", ".join(EXPORT_FORMATS.names()))
    p.add_argument("--out", metavar="FILE", help="output file (default: LEVEL/ticket[_compact].safetensors|.onnx|"
                   ".torchscript.pt; a state_dict to .pt/.pth is written with torch.save)")
    p.add_argument("--compact", action="store_true", help="onnx/torchscript: remove hidden channels that provably "
                   "cannot change the outputs (all-zero kernels or filters), and say which")
    p.add_argument("--csr-box-head", action="store_true", help="torchscript: store the R-CNN box head's fc6/fc7 "
                   "as CSR (faster only at very high sparsity; see bench/latency.py)")
    p.set_defaults(func=cmd_export)
    return parser


def _lost_peer(e: RuntimeError) -> bool:
    """Whether `e` is a collective that failed under torchrun because a peer died or hung: torch's
    DistError, or the RuntimeError gloo / NCCL raise (they name themselves in the message)."""
    torch = sys.modules.get("torch")
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or torch is None or not torch.distributed.is_available():
        return False
    text = str(e).lower()
    return isinstance(e, torch.distributed.DistError) or "gloo" in text or "nccl" in text


def error_line(error: TicketlabError) -> str:
    """The one line to print. An error raised in a DataLoader worker comes back with the worker's
    traceback folded into its message; its last line is the original message."""
    text = str(error)
    if "Original Traceback" in text:
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return text


def os_error_line(error: OSError) -> str:
    """`path: what went wrong` for a failed file-system call (both paths for a rename)."""
    what = error.strerror or error.__class__.__name__
    paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
    return f"{' → '.join(paths)}: {what}" if paths else str(error)


def main(argv: Optional[Sequence[str]] = None) -> int:
    # cuBLAS reads this once, before its first matmul: bit-exact resume on GPU needs it set early.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    args = argparse.Namespace()
    try:
        with stop_on_signals(poll=False) as stop:  # from the start: a signal while parsing stops too
            args = build_parser().parse_args(argv)
            stop.poll = args.func in CHECKPOINTING
            args.stop = stop
            return args.func(args)
    except Stopped as e:
        ignore_signals()  # the handlers are gone; another signal now must not kill the exit itself
        print(e.line(), file=sys.stderr)
        return RESUMABLE
    except TicketlabError as e:
        if getattr(args, "debug", False):
            raise
        print(f"ticketlab: error: {error_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the user gave: missing, a file where a directory goes, a full disk, ...
        if getattr(args, "debug", False):
            raise
        print(f"ticketlab: error: {os_error_line(e)}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if getattr(args, "debug", False) or not _lost_peer(e):
            raise
        first = str(e).strip().splitlines()[0]
        print(f"ticketlab: error: lost contact with another process of the torchrun job ({first}); "
              "torchrun's summary names the one that failed; rerun the same command to resume", file=sys.stderr)
        return 3


def entry() -> int:
    """The process entry (console script, `python -m ticketlab`): `main`, then signals are ignored,
    so that one arriving while the interpreter shuts down (its handlers are gone) cannot turn a
    finished command into a death by signal."""
    status = main()
    ignore_signals()
    return status


if __name__ == "__main__":
    raise SystemExit(entry())
