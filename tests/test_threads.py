"""torch computes with one thread per physical core unless OMP_NUM_THREADS says otherwise."""

import torch

from imdb_llm import threads


def _cpuinfo(tmp_path, cores_of_each_cpu):
    """A cpuinfo with one block per logical CPU; ``cores_of_each_cpu`` lists (socket, core) per CPU."""
    blocks = [f"processor\t: {i}\nphysical id\t: {s}\ncore id\t\t: {c}\nflags\t\t: fpu\n" for i, (s, c) in enumerate(cores_of_each_cpu)]
    path = tmp_path / "cpuinfo"
    path.write_text("\n".join(blocks))
    return str(path)


def test_hyper_threads_count_once(tmp_path, monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(8)))
    # 2 sockets x 2 cores x 2 hyper-threads: 8 logical CPUs, 4 physical cores
    info = _cpuinfo(tmp_path, [(s, c) for s in (0, 1) for c in (0, 1) for _ in range(2)])
    assert threads.physical_cores(info) == 4


def test_affinity_limits_the_count_and_missing_cpuinfo_falls_back(tmp_path, monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    info = _cpuinfo(tmp_path, [(0, c) for c in range(8)])
    assert threads.physical_cores(info) == 2  # a container allowed 2 of 8 cores
    assert threads.physical_cores(str(tmp_path / "missing")) == 2


def test_set_torch_threads_respects_omp_num_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)
        assert threads.set_torch_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr(threads, "physical_cores", lambda: 3)
        assert threads.set_torch_threads() == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
