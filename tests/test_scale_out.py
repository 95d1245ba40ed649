"""One sweep over several devices, worker processes or a JAX job: the same store as
one process on one device, bit for bit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from test_sweep import TINY, arrays, assert_same_store, edgesplit


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("scale") / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def one_process(sweep_file):
    """The store of a plain run: one process, one device."""
    store = sweep_file.parent / "one.zarr"
    result = edgesplit(*run_args(sweep_file, store), env={**os.environ, "JAX_NUM_CPU_DEVICES": "1"})
    assert result.returncode == 0, result.stderr
    return arrays(store)


def run_args(sweep_file, store, *extra) -> list[str]:
    return ["run", str(sweep_file), "--out", str(store), "--quiet", *extra]


def assert_two_shares_make(store, one_process, processes):
    """Both processes ended well, each solved its share (chunks 0 and 2 are share 0's,
    chunk 1 share 1's), and together they wrote the one-process store."""
    for process in processes:
        assert process.returncode == 0, process.stderr
    assert "worker 0/2: 2 chunk(s) solved" in processes[0].stderr
    assert "worker 1/2: 1 chunk(s) solved" in processes[1].stderr
    assert_same_store(one_process, arrays(store))


def launch_together(*argvs, env=None) -> list[subprocess.CompletedProcess]:
    """Start every command at once, then wait for all of them."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "edgesplit", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for argv in argvs
    ]
    results = []
    for proc, argv in zip(procs, argvs, strict=True):
        out, err = proc.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
    return results


def test_four_cpu_devices_write_the_one_device_store(sweep_file, one_process, tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    count = subprocess.run(
        [sys.executable, "-c", "import jax; print(jax.local_device_count())"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert count.stdout.strip() == "4"
    store = tmp_path / "four.zarr"
    result = edgesplit(*run_args(sweep_file, store), env=env)
    assert result.returncode == 0, result.stderr
    assert_same_store(one_process, arrays(store))


def test_workers_started_together_write_the_one_process_store(sweep_file, one_process, tmp_path):
    store = tmp_path / "workers.zarr"
    init = edgesplit("init", str(sweep_file), "--out", str(store))
    assert init.returncode == 0, init.stderr
    assert "0 of 3 chunks done" in init.stderr
    assert not arrays(store)["chunk_done"].any()
    workers = launch_together(
        *(run_args(sweep_file, store, "--worker", f"{i}/2") for i in range(2))
    )
    assert_two_shares_make(store, one_process, workers)
    again = edgesplit(*run_args(sweep_file, store, "--worker", "1/2"))
    assert again.returncode == 0 and "0 chunk(s) solved, store complete" in again.stderr


def test_a_two_process_jax_job_on_loopback_writes_the_one_process_store(
    sweep_file, one_process, tmp_path
):
    with socket.socket() as probe:  # a free port for the coordinator
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = tmp_path / "job.zarr"
    job = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id"]
    processes = launch_together(*(run_args(sweep_file, store, *job, str(i)) for i in range(2)))
    assert_two_shares_make(store, one_process, processes)
