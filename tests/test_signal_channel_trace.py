"""A signal while `find` traces a channel ticket's groups (Torch-Pruning's dependency graph, before
the run dir is touched) ends it at once: exit 75 with the one stopped line, the trace not finished,
nothing written; the same command then runs to the end. Before, the first signal only raised the
stop flag, which nothing polls during the trace: the process waited for the trace to end (minutes on
a detector) and started the run dir before it stopped.

As in tests/test_signals_every_command.py, a real `ticketlab find` process gets a real SIGINT or
SIGTERM at a seeded moment; here the moment is a seeded module call of the trace's forward pass
(sent from inside it, so it lands in the trace for certain), and the trace writes a marker once it
is done: a marker means the process waited for the trace."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path

from test_signals_every_command import LINE
from ticketlab.cli import main
from ticketlab.stop import RESUMABLE

ROOT = Path(__file__).resolve().parents[1]
RESNET = ROOT / "configs" / "digits_resnet20.yaml"
SET = ["train.duration=2it", "train.eval_every=2it", "train.checkpoint_every=2it", "prune.levels=1",
       "prune.granularity=channel", "prune.exclude=[fc]"]
ARGV = ["find", str(RESNET), *[a for s in SET for a in ("--set", s)]]

SIGNAL_IN_TRACE = """
import os, signal, sys
from pathlib import Path
import torch, torch_pruning as tp
from ticketlab.cli import main
signum, at, marker = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
build, calls = tp.DependencyGraph.build_dependency, []
def hook(module, inputs, output):
    calls.append(module)
    if len(calls) == at:
        os.kill(os.getpid(), signum)
def traced(self, *args, **kwargs):
    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        graph = build(self, *args, **kwargs)
    finally:
        handle.remove()
    marker.write_text("the trace ended")
    return graph
tp.DependencyGraph.build_dependency = traced
sys.exit(main(sys.argv[4:]))
"""


def test_a_signal_during_the_channel_trace_stops_find_at_once_with_nothing_written(tmp_path):
    rng = random.Random("signal during the channel trace")
    sig, at = rng.choice([signal.SIGINT, signal.SIGTERM]), rng.randint(1, 40)  # ResNet-20: ~70 module calls
    out, marker = tmp_path / "run", tmp_path / "traced"
    proc = subprocess.run([sys.executable, "-c", SIGNAL_IN_TRACE, str(int(sig)), str(at), str(marker), *ARGV,
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == RESUMABLE, proc.stderr
    assert LINE.fullmatch(proc.stderr) and sig.name in proc.stderr, proc.stderr
    assert not marker.exists()  # it did not wait for the trace
    assert not out.exists()  # nothing half-written: the run dir is created after the trace
    assert main([*ARGV, "--out", str(out)]) == 0 and (out / "level_01" / "metrics.json").is_file()
