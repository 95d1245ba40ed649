"""Every bad input is refused the same way: exit status 2, one line on stderr naming the
field and the problem, no traceback, and no store created or changed."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import xarray as xr
from test_scenario_file import EXAMPLE

from edgesplit.cli import main
from edgesplit.io.sweep_file import parse_sweep
from edgesplit.sweep.runner import run_sweep

SWEEP = """name = "base"
topologies = 2
seed = 1
chunk = 1
schemes = ["proposed", "user_only"]

[setup]
num_devices = 3
crbs = 4
rrbs = 20
price_step = 0.5

[axes]
mean_arrival_rate = [5.0]
"""


def sweep_with(old: str, new: str) -> str:
    assert old in SWEEP, old
    return SWEEP.replace(old, new)


def scenario_with(change) -> str:
    data = copy.deepcopy(EXAMPLE)
    change(data)
    return json.dumps(data)


def remove(key):
    return lambda d: d.pop(key)


def setter(path, value):
    def change(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


# (id, file text or None, argument template, field named, problem named).
# {file} is the bad file, {new} a store path that must stay absent, {store} a finished
# edgesplit store, {foreign} a Zarr store of someone else, {folder} a plain folder,
# {blocked} a path below a regular file; the last three must stay unchanged.
CASES = [
    (
        "no topologies",
        sweep_with("topologies = 2\n", ""),
        "run {file} --out {new}",
        "topologies",
        "missing",
    ),
    ("unknown key", SWEEP + 'colour = "red"\n', "run {file} --out {new}", "colour", "unknown key"),
    (
        "seed not integer",
        sweep_with("seed = 1", "seed = 1.5"),
        "run {file} --out {new}",
        "seed",
        "integer",
    ),
    (
        "seed is text",
        sweep_with("seed = 1", 'seed = "one"'),
        "run {file} --out {new}",
        "seed",
        "integer",
    ),
    (
        "negative rate",
        sweep_with("crbs = 4", "crbs = 4\nmean_arrival_rate = -2.0").replace(
            "[axes]\nmean_arrival_rate = [5.0]\n", ""
        ),
        "run {file} --out {new}",
        "setup.mean_arrival_rate",
        "> 0",
    ),
    (
        "zero capacity",
        sweep_with("crbs = 4", "crbs = 0"),
        "run {file} --out {new}",
        "setup.crbs",
        ">= 1",
    ),
    (
        "NaN",
        sweep_with("crbs = 4", "crbs = 4\ncpu_hz = nan"),
        "run {file} --out {new}",
        "setup.cpu_hz",
        "finite",
    ),
    (
        "infinity",
        sweep_with("crbs = 4", "crbs = 4\nradius_m = inf"),
        "run {file} --out {new}",
        "setup.radius_m",
        "finite",
    ),
    (
        "empty grid",
        sweep_with("[5.0]", "[]"),
        "run {file} --out {new}",
        "axes.mean_arrival_rate",
        "empty",
    ),
    (
        "repeated grid",
        sweep_with("[5.0]", "[5.0, 5.0]"),
        "run {file} --out {new}",
        "axes.mean_arrival_rate",
        "repeats",
    ),
    (
        "unknown axis",
        sweep_with("[axes]", "[axes]\nspeed = [1, 2]"),
        "run {file} --out {new}",
        "axes.speed",
        "unknown key",
    ),
    (
        "unknown scheme",
        sweep_with('"user_only"]', '"greedy"]'),
        "run {file} --out {new}",
        "schemes[1]",
        "one of",
    ),
    (
        "wrong type",
        sweep_with("num_devices = 3", 'num_devices = "many"'),
        "run {file} --out {new}",
        "setup.num_devices",
        "integer",
    ),
    (
        "profile column",
        sweep_with("[setup]", '[setup]\nmodels = ["no_fp_ops.csv"]'),
        "run {file} --out {new}",
        "setup.models[0]",
        "missing column",
    ),
    (
        "profile no layers",
        sweep_with("[setup]", '[setup]\nmodels = ["empty.csv"]'),
        "run {file} --out {new}",
        "setup.models[0]",
        "no layers",
    ),
    ("bad TOML", SWEEP + "[axes\n", "run {file} --out {new}", "sweep", "TOML"),
    (
        "game setting",
        sweep_with("[axes]", "[game]\nmin_gain = -1\n\n[axes]"),
        "run {file} --out {new}",
        "game.min_gain",
        ">= 0",
    ),
    ("no topologies flag", SWEEP, "run {file} --out {new} --topologies 0", "--topologies", ">= 1"),
    ("chunk too big", SWEEP, "run {file} --out {new} --chunk 3", "--chunk", "<= 2"),
    ("unwritable out", SWEEP, "run {file} --out {blocked}", "store.zarr", "cannot create"),
    ("foreign store", SWEEP, "run {file} --out {foreign}", "foreign.zarr", "not an edgesplit"),
    ("plain folder", SWEEP, "run {file} --out {folder}", "folder", "not a Zarr store"),
    (
        "other sweep",
        sweep_with("seed = 1", "seed = 2"),
        "run {file} --out {store}",
        "store.zarr",
        "was made with seed = 1, not 2",
    ),
    ("missing sweep", None, "run {file}", "missing.toml", "cannot read"),
    ("no devices key", scenario_with(remove("devices")), "solve {file}", "devices", "missing"),
    (
        "unknown server key",
        scenario_with(setter(("servers", 0, "gpu"), 1)),
        "solve {file}",
        "servers[0].gpu",
        "unknown key",
    ),
    (
        "crbs as text",
        scenario_with(setter(("servers", 1, "crbs"), "ten")),
        "solve {file}",
        "servers[1].crbs",
        "integer",
    ),
    (
        "negative arrival",
        scenario_with(setter(("devices", 2, "arrival_rate"), -1)),
        "solve {file}",
        "devices[2].arrival_rate",
        "> 0",
    ),
    (
        "zero cpu",
        scenario_with(setter(("devices", 0, "cpu_hz"), 0)),
        "solve {file}",
        "devices[0].cpu_hz",
        "> 0",
    ),
    (
        "step above max price",
        scenario_with(setter(("servers", 1, "price_step"), 12.0)),
        "solve {file}",
        "servers[1].price_step",
        "must not exceed max_price (10.0)",
    ),
    (
        "old prices key",
        scenario_with(setter(("game",), {"prices": "separate"})),
        "solve {file}",
        "game.prices",
        'renamed: use "joint_price": true (or false for separate prices)',
    ),
    (
        "joint price as text",
        scenario_with(setter(("game",), {"joint_price": "yes"})),
        "solve {file}",
        "game.joint_price",
        "must be true or false",
    ),
    (
        "NaN in JSON",
        json.dumps(EXAMPLE).replace('"reward": 1.0', '"reward": NaN', 1),
        "solve {file}",
        "NaN_in_JSON.json",
        "NaN",
    ),
    (
        "Infinity in JSON",
        json.dumps(EXAMPLE).replace('"crb_hz": 745000000.0', '"crb_hz": Infinity', 1),
        "solve {file}",
        "Infinity_in_JSON.json",
        "Infinity",
    ),
    (
        "model without layers",
        scenario_with(setter(("models", "tiny", "layers"), [])),
        "solve {file}",
        "models.tiny.layers",
        "empty",
    ),
    (
        "rates shape",
        scenario_with(setter(("rate_per_rrb", 0), [1e6])),
        "solve {file}",
        "rate_per_rrb[0]",
        "one rate per server",
    ),
    (
        "no fixed prices",
        scenario_with(lambda d: d["servers"][0].pop("price_crb")),
        "solve {file} --fixed-prices",
        "price_crb",
        "needs",
    ),
    (
        "price above max",
        scenario_with(setter(("servers", 0, "price_rrb"), 50.0)),
        "solve {file} --fixed-prices",
        "servers[0].price_rrb",
        "<= 10",
    ),
    ("worker past N", SWEEP, "run {file} --out {new} --worker 2/2", "--worker", "0 <= I < N"),
    ("worker not a share", SWEEP, "run {file} --out {new} --worker one", "--worker", "must be I/N"),
    (
        "worker and job",
        SWEEP,
        "run {file} --out {new} --worker 0/2 --distributed",
        "--worker",
        "cannot be combined",
    ),
    (
        "coordinator alone",
        SWEEP,
        "run {file} --out {new} --coordinator 127.0.0.1:1 --num-processes 2",
        "--coordinator",
        "needs --num-processes and --process-id",
    ),
    (
        "process id past N",
        SWEEP,
        "run {file} --out {new} --coordinator 127.0.0.1:1 --num-processes 2 --process-id 2",
        "--process-id",
        "0 <= I < N",
    ),
    (
        "init bad sweep",
        sweep_with("seed = 1", "seed = -1"),
        "init {file} --out {new}",
        "seed",
        ">= 0",
    ),
    (
        "unknown leader rule",
        sweep_with("[axes]", '[game]\nleader = "greedy"\n\n[axes]'),
        "run {file} --out {new}",
        "game.leader",
        "must be one of",
    ),
    (
        "leader rule not a string",
        sweep_with("[axes]", "[game]\nleader = 3\n\n[axes]"),
        "run {file} --out {new}",
        "game.leader",
        "must be one of",
    ),
    (
        "enumerate past its limit",
        sweep_with("price_step = 0.5", "price_step = 0.001") + 'leader = ["local", "enumerate"]\n',
        "run {file} --out {new}",
        "axes.leader",
        "above 250,000",
    ),
    (
        "best response with separate prices",
        sweep_with("[axes]", '[game]\nleader = "best_response"\njoint_price = false\n\n[axes]'),
        "run {file} --out {new}",
        "game.leader",
        "needs joint_price = true",
    ),
    (
        "game axis also in game",
        sweep_with("[axes]", '[game]\nleader = "local"\n\n[axes]') + 'leader = ["local"]\n',
        "run {file} --out {new}",
        "game.leader",
        "is also an axis",
    ),
    (
        "unknown leader in a scenario",
        scenario_with(setter(("game",), {"leader": "greedy"})),
        "solve {file}",
        "game.leader",
        "must be one of",
    ),
    ("no chunks per call", SWEEP, "run {file} --out {new} --batch 0", "--batch", "1 or more"),
    ("bad JSON", "{ not json", "solve {file}", "bad_JSON.json", "not valid JSON"),
    ("missing scenario", None, "solve {file}", "missing.json", "cannot read"),
    ("summarize no store", None, "summarize {new}", "new.zarr", "no such store"),
    ("plot foreign store", None, "plot {foreign} -o {new}.png", "foreign.zarr", "not an edgesplit"),
    ("summarize unfinished", None, "summarize {unfinished}", "store", "no finished chunk"),
    # The analysis of a store (its schemes: proposed, user_only; its axis: rate 5).
    (
        "unknown baseline",
        None,
        "summarize {store} --baseline nobody",
        "--baseline",
        "scheme has no label 'nobody' (labels: proposed, user_only)",
    ),
    (
        "compare along no dim",
        None,
        "summarize {store} --baseline local --along leader",
        "--along",
        "device_utility does not vary along 'leader' (its dims: scheme,",
    ),
    (
        "compare unknown variable",
        None,
        "summarize {store} --baseline proposed --variable x",
        "variable",
        "unknown variable 'x'",
    ),
    (
        "too few resamples",
        None,
        "summarize {store} --baseline proposed --bootstrap 5",
        "resamples",
        "must be >= 100, got 5",
    ),
    (
        "no resamples",
        None,
        "summarize {store} --baseline proposed --bootstrap 0",
        "resamples",
        "must be >= 100, got 0",
    ),
    (
        "negative bootstrap seed",
        None,
        "summarize {store} --baseline proposed --bootstrap 200 --seed -1",
        "seed",
        "must be >= 0, got -1",
    ),
    (
        "bootstrap without baseline",
        None,
        "summarize {store} --bootstrap 500",
        "--bootstrap",
        "give --baseline too",
    ),
    (
        "confidence above 1",
        None,
        "summarize {store} --confidence 1.5",
        "confidence",
        "between 0 and 1",
    ),
    (
        "plot selects no dim",
        None,
        "plot {store} -o {new}.png --sel leader=local",
        "--sel leader",
        "the store has no dim 'leader'",
    ),
    (
        "plot selects no value",
        None,
        "plot {store} -o {new}.png --sel mean_arrival_rate=7",
        "--sel mean_arrival_rate",
        "no label '7' (labels: 5)",
    ),
    (
        "selection without a value",
        None,
        "plot {store} -o {new}.png --sel mean_arrival_rate",
        "--sel",
        "must be DIM=VALUE",
    ),
    (
        "selection twice",
        None,
        "plot {store} -o {new}.png --sel mean_arrival_rate=5 --sel mean_arrival_rate=5",
        "--sel mean_arrival_rate",
        "given twice",
    ),
    (
        "plot unknown image type",
        None,
        "plot {store} -o {new}.xyz",
        "new.zarr.xyz",
        "Format 'xyz' is not supported",
    ),
    (
        "export topology out of range",
        None,
        "export {store} --topology 2 -o {new}",
        "--topology",
        "must be in 0..1",
    ),
    (
        "export selects the scheme",
        None,
        "export {store} --topology 0 --sel scheme=proposed -o {new}",
        "--sel scheme",
        "solve (--scheme)",
    ),
    (
        "export selects no dim",
        None,
        "export {store} --topology 0 --sel leader=local -o {new}",
        "--sel leader",
        "is not a swept dim of the store",
    ),
    ("trace a bad file", "{ not json", "trace {file}", "trace_a_bad_file.json", "not valid JSON"),
]


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    root = tmp_path_factory.mktemp("places")
    sweep = parse_sweep(SWEEP + "\n[game]\ngrid_certificate = false\n")  # quick: a store to find
    run_sweep(sweep, root / "store.zarr", progress=False)
    run_sweep(sweep.replace(topologies=2), root / "unfinished.zarr", progress=False)
    import zarr

    zarr.open_group(str(root / "unfinished.zarr"), mode="r+")["chunk_done"][:] = False
    xr.Dataset({"a": ("x", [1, 2])}).to_zarr(root / "foreign.zarr", zarr_format=2)
    (root / "folder").mkdir()
    (root / "folder" / "notes.txt").write_text("not a store")
    (root / "a-file").write_text("a regular file")
    (root / "no_fp_ops.csv").write_text("layer,input,output\nconv,1,2\n")
    (root / "empty.csv").write_text("layer,input,output,fp_ops\n")
    return root


def fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    for item in sorted(path.rglob("*")):
        digest.update(str(item.relative_to(path)).encode())
        if item.is_file():
            digest.update(item.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("name, text, template, field, problem", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_cleanly(
    name, text, template, field, problem, places, tmp_path, capsys
):
    suffix = ".json" if template.startswith(("solve", "trace")) else ".toml"
    bad = places / (("missing" if text is None else name.replace(" ", "_")) + suffix)
    if text is not None:
        bad.write_text(text)
    kept = ["store.zarr", "foreign.zarr", "folder", "a-file", "unfinished.zarr"]
    before = {
        k: fingerprint(places / k) if (places / k).is_dir() else (places / k).read_text()
        for k in kept
    }
    new = tmp_path / "new.zarr"
    argv = template.format(
        file=bad, new=new, store=places / "store.zarr", foreign=places / "foreign.zarr",
        folder=places / "folder", blocked=places / "a-file" / "store.zarr",
        unfinished=places / "unfinished.zarr",
    ).split()  # fmt: skip

    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("edgesplit: error: "), err
    assert field in err and problem in err, err
    assert not new.exists() and not Path(f"{new}.png").exists()
    after = {
        k: fingerprint(places / k) if (places / k).is_dir() else (places / k).read_text()
        for k in kept
    }
    assert after == before
    assert not [p for p in places.iterdir() if p.name.startswith(".")], "a template was left behind"


def test_the_table_is_large_enough():
    assert len(CASES) >= 30
    assert len({c[3] for c in CASES}) >= 25  # many different fields named
