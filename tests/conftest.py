"""Test-session settings: one intra-op thread, here and in the subprocesses tests start.

With two OpenMP threads on a 2-core machine that is doing anything else, a small model's step can
run 100× slower (threads spin waiting for each other); one thread keeps the suite's run time
predictable. Results do not depend on it: every comparison in the suite is within one process
setting.
"""

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import torch  # noqa: E402

torch.set_num_threads(1)
