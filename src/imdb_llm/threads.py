"""How many CPU threads torch computes with: one per physical core, unless told otherwise.

A hyper-thread shares its core's vector units with its sibling, so for the matrix work of training
a second thread per core adds scheduling, not arithmetic. OpenMP's default counts logical CPUs, so
on a machine with SMT torch may start twice the threads that help. An explicit ``OMP_NUM_THREADS``
(two runs side by side, one thread each, say) is the user's decision and is left alone.
"""

from __future__ import annotations

import io
import os
from contextlib import contextmanager
from typing import Iterator


def physical_cores(cpuinfo: str = "/proc/cpuinfo") -> int:
    """Distinct (socket, core) pairs this process may run on; the CPU count where cpuinfo says nothing."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cores: set[tuple[str, str]] = set()
    socket = core = None
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            for line in [*f, ""]:  # the trailing "" closes the last processor block
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    socket = value.strip()
                elif key == "core id":
                    core = value.strip()
                elif not key:
                    if core is not None:
                        cores.add((socket or "0", core))
                    socket = core = None
    except OSError:
        pass
    return max(1, min(len(cores) or usable, usable))


def set_torch_threads() -> int:
    """Give torch one thread per physical core on a CPU run; returns the thread count in use."""
    import torch

    if os.environ.get("OMP_NUM_THREADS") or torch.cuda.is_available():
        return torch.get_num_threads()
    threads = physical_cores()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


@contextmanager
def training_session(output_dir: str | os.PathLike, log_name: str, seed: int, tf32: bool = False) -> Iterator[io.StringIO]:
    """What a training script does first: make ``output_dir``, tee the console into ``output_dir/log_name``
    (:func:`imdb_llm.results.capture_log`, yielded), set the seed, give torch one thread per physical core
    (unless OMP_NUM_THREADS says otherwise) and, with ``tf32``, allow TF32 matmuls on CUDA."""
    import torch
    from transformers import set_seed

    from imdb_llm.results import capture_log

    os.makedirs(output_dir, exist_ok=True)
    with capture_log(os.path.join(output_dir, log_name)) as log:
        set_seed(seed)
        print(f"torch threads: {set_torch_threads()}")
        if tf32 and torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        yield log
