"""One line describing the machine a benchmark ran on, printed by every script in bench/."""

from __future__ import annotations

import os
import platform

import torch


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe(threads: int | None = None) -> str:
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs{gpu}, load average "
            f"{os.getloadavg()[0]:.1f}, torch {torch.__version__} with "
            f"{threads or torch.get_num_threads()} threads, Python {platform.python_version()}")
