"""Shared test set-up: float64, compile caches of the tests' own shared by their
processes and kept between runs, and random scenario files for the reference checks."""

from __future__ import annotations

import os
import zlib
from functools import partial

import jax
import numpy as np
import pytest

from edgesplit import reference
from edgesplit.config import Setup
from edgesplit.sweep.topology import sample_topology

jax.config.update("jax_enable_x64", True)


# Bytes each of the two caches keeps: a run of the suite writes about 50 MB to them.
CACHE_BYTES = 2 * 2**30


@pytest.fixture(scope="session", autouse=True)
def shared_compile_cache(request, tmp_path_factory):
    """The tests keep their compiled programs in a cache of their own, never in the
    user's, and so do the command lines they run (in another: they split the CPU into
    devices, and compile other programs). Both are shared by the test processes of one
    session (``pytest-xdist``'s workers), so that a program one compiles the others load:
    many tests build the same small sweeps and games, and compiling is most of the
    suite's time. They are kept between sessions in pytest's cache
    (``.pytest_cache/d/xla-*``; ``pytest --cache-clear`` empties it), so that a second
    run compiles only what changed: JAX knows a program by its whole compiled text and
    the versions and flags that compile it, so a stale entry is never loaded, only left
    to be evicted (least recently used first, past :data:`CACHE_BYTES`). Without pytest's
    cache (``-p no:cacheprovider``) they are the session's temporary folders. JAX reads
    and writes a cache shared by processes under a file lock, which it takes when the
    cache has a size limit."""
    from edgesplit.sweep.compile_cache import ENVIRONMENT

    names = ("xla-tests", "xla-cli")
    if getattr(request.config, "cache", None) is not None:
        caches = {name: request.config.cache.mkdir(name) for name in names}
    else:
        root = tmp_path_factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):
            root = root.parent  # every worker's base is a folder of the session's
        caches = {name: root / name for name in names}
        for folder in caches.values():
            folder.mkdir(exist_ok=True)
    settings = {
        "jax_compilation_cache_dir": str(caches["xla-tests"]),
        "jax_compilation_cache_max_size": CACHE_BYTES,
        "jax_persistent_cache_min_compile_time_secs": 0,
        "jax_persistent_cache_min_entry_size_bytes": -1,
    }
    before = {name: getattr(jax.config, name) for name in settings}
    for name, value in settings.items():
        jax.config.update(name, value)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENVIRONMENT, str(caches["xla-cli"]))
        for name, value in settings.items():  # the command lines' JAX keeps every program too
            if name != "jax_compilation_cache_dir":
                patch.setenv(name.upper(), str(value))
        yield
    for name, value in before.items():
        jax.config.update(name, value)


DEFAULT_SETUP = Setup()


@partial(jax.jit, static_argnums=(1, 2, 3))  # one program a draw, not an op at a time
def draw_topology(key, setup=DEFAULT_SETUP, devices=20, servers=2):
    """The scenario of a random topology (:func:`~edgesplit.sweep.topology.sample_topology`)
    padded to ``devices`` and ``servers``."""
    return sample_topology(key, setup, devices, servers).scenario


def one_line(capsys, start: str = "edgesplit: error: ", *words) -> str:
    """The one line on stderr (nothing on stdout), which starts with ``start`` and holds
    ``words``."""
    out, err = capsys.readouterr()
    assert out == "", out
    assert err.count("\n") == 1 and err.startswith(start), err
    for word in words:
        assert word in err, err
    return err


def random_problem(
    rng: np.random.Generator,
    num_devices: int,
    num_servers: int,
    *,
    max_layers: int = 4,
    max_crbs: int = 5,
    max_rrbs: int = 5,
    max_price: tuple[float, float] = (1.0, 3.0),
    price_step: tuple[float, float] = (0.1, 0.4),
) -> dict:
    """A random scenario in the JSON file format, scaled so that every option occurs:
    local, offload at any split, idle, capacity shortages and unstable queues."""
    models = {}
    devices = []
    for m in range(num_devices):
        layers = int(rng.integers(1, max_layers + 1))
        cycles = rng.uniform(0.2e8, 2e8, layers)
        cycles[rng.random(layers) < 0.1] = 0.0  # layers with no work (reshape, dropout)
        bits = rng.uniform(0.05e6, 2e6, layers)
        models[f"net{m}"] = {
            "input_bits": float(rng.uniform(0.2e6, 2e6)),
            "layers": [
                {"name": f"l{j}", "cycles": float(cycles[j]), "output_bits": float(bits[j])}
                for j in range(layers)
            ],
        }
        devices.append(
            {
                "model": f"net{m}",
                "cpu_hz": float(rng.uniform(0.5e9, 3e9)),
                "arrival_rate": float(rng.uniform(0.5, 15.0)),
                "reward": float(rng.uniform(0.5, 2.0)),
                "delay_weight": float(rng.uniform(0.1, 5.0)),
                "payment_weight": float(rng.uniform(0.2, 2.0)),
            }
        )
    servers = []
    for _ in range(num_servers):
        top = float(rng.uniform(*max_price))
        servers.append(
            {
                "crb_hz": float(rng.uniform(0.5e9, 3e9)),
                "crbs": int(rng.integers(1, max_crbs + 1)),
                "rrbs": int(rng.integers(1, max_rrbs + 1)),
                "cost_crb": float(rng.uniform(0.0, 0.2)),
                "cost_rrb": float(rng.uniform(0.0, 0.2)),
                "max_price": top,
                "price_step": float(rng.uniform(*price_step)),
                "result_delay": float(rng.uniform(0.0, 0.01)),
                "price_crb": float(rng.uniform(0.0, top)),
                "price_rrb": float(rng.uniform(0.0, top)),
            }
        )
    rates = rng.uniform(0.5e6, 5e6, (num_devices, num_servers))
    return {
        "models": models,
        "devices": devices,
        "servers": servers,
        "rate_per_rrb": rates.tolist(),
    }


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator seeded by the test's name, so each test draws its own fixed cases."""
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


def tiny_problem(rng, num_devices=None, price_step=(0.3, 0.6), max_price=(1.0, 2.0)):
    """2-4 devices, 2 servers and coarse grids (a handful of levels per server), redrawn
    until both servers sell something at price 0, so that the price game is not idle."""
    for _ in range(200):
        problem = random_problem(
            rng,
            int(rng.integers(2, 5)) if num_devices is None else num_devices,
            2,
            max_layers=2,
            max_crbs=3,
            max_rrbs=3,
            max_price=max_price,
            price_step=price_step,
        )
        free = [[reference.grid_top(problem, s)] * 2 for s in range(2)]
        _, crbs, _ = reference.server_utilities_at(problem, free, reference.PROPOSED)
        if all(c > 0 for c in crbs):
            return problem
    raise AssertionError("no live tiny problem drawn")
