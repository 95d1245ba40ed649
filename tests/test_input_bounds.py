"""Bounds from the types: every count within the int32 that holds it, every number within
its precision's range and every product of them finite, and files within their size and
nesting caps. Each is refused as every bad input is (exit status 2, one line naming the
field, nothing on stdout, no store created or changed), and ``edgesplit solve`` prints
strict JSON."""

from __future__ import annotations

import json
import math
import os
import threading

import numpy as np
import pytest
from test_bad_input import SWEEP, fingerprint, scenario_with, setter, sweep_with
from test_scenario_file import EXAMPLE

from edgesplit.cli import main
from edgesplit.config import MAX_CYCLE_WINDOW, GameSettings
from edgesplit.errors import InputError
from edgesplit.game.best_response import IDLE, Choice
from edgesplit.game.solve import Solution
from edgesplit.io.scenario_file import solution_to_json
from edgesplit.io.sweep_file import parse_sweep, read_sweep
from edgesplit.model.dnn import load_profile
from edgesplit.validation import FLOAT_MAX, INT32_MAX, MAX_FILE_BYTES, MAX_NESTING, load_json

FLOAT32 = SWEEP.replace("schemes =", 'precision = "float32"\nschemes =')
BAD_CELL = "layer,input,output,fp_ops\nc1,10,20,5\nc2,20,20,5\nc3,20,20,5\nfc,20,4,abc\n"


def deep(levels: int, opening: str = "[", closing: str = "]") -> str:
    return opening * levels + closing * levels


def scenario_text_with(old: str, new: str) -> str:
    text = json.dumps(EXAMPLE)
    assert old in text, old
    return text.replace(old, new, 1)


# (id, file text, command, field named, problem named). Every command runs on {file}
# and, for a sweep, into {store}: an existing store that must stay byte for byte as it is.
CASES = [
    # int32: each count within the int32 that holds it, and products of counts.
    ("crbs beyond int32", sweep_with("crbs = 4", "crbs = 3000000000"), "run", "setup.crbs",
     f"must be <= {INT32_MAX}, got 3000000000"),
    ("crbs axis beyond int32", sweep_with("crbs = 4\n", "") + "crbs = [4, 2147483648]\n", "run",
     "axes.crbs[1]",
     f"must be <= {INT32_MAX}"),
    ("max_rounds 2**32", SWEEP.replace("[axes]", "[game]\nmax_rounds = 4294967296\n\n[axes]"),
     "run", "game.max_rounds", f"must be <= {INT32_MAX - 1}"),
    ("blocks of a market", sweep_with("crbs = 4", "crbs = 1000000000"), "run", "setup.crbs",
     "num_devices × (crbs + rrbs) is 3.00e+9, above 2147483647"),
    ("price steps", sweep_with("price_step = 0.5", "price_step = 1e-12"), "init",
     "setup.price_step", "max_price / price_step is 1.00e+13, above 1000000000"),
    ("topologies past uint32", sweep_with("topologies = 2", "topologies = 4294967297"), "init",
     "topologies", "must be <= 4294967296"),
    ("exhaustive grid index",
     SWEEP.replace("[axes]", '[game]\nbest_response = "exhaustive"\ncrb_grid = 65536\n'
                   "rrb_grid = 65536\n\n[axes]"),
     "run", "game.crb_grid", "crb_grid × rrb_grid is 4294967296"),
    ("solve crbs 2**31", scenario_with(setter(("servers", 0, "crbs"), 2**31)), "solve",
     "servers[0].crbs", f"must be <= {INT32_MAX}, got 2147483648"),
    ("solve max_rounds 10**12", scenario_with(setter(("game",), {"max_rounds": 10**12})),
     "solve", "game.max_rounds", f"must be <= {INT32_MAX - 1}"),
    # cycle_window: small enough to allocate.
    ("cycle_window 2**32", SWEEP.replace("[axes]", "[game]\ncycle_window = 4294967296\n\n[axes]"),
     "run", "game.cycle_window", f"must be <= {MAX_CYCLE_WINDOW}"),
    ("solve cycle_window 2**32", scenario_with(setter(("game",), {"cycle_window": 2**32})),
     "solve", "game.cycle_window", f"must be <= {MAX_CYCLE_WINDOW}"),
    # floats: within the sweep's precision, and products that stay finite.
    ("float32 setup value", FLOAT32.replace("crbs = 4", "crbs = 4\ncpu_hz = 1e39"), "run",
     "setup.cpu_hz", "must be within ±3.4028235e+38, the range of float32, got 1e+39"),
    ("float32 axis value", FLOAT32.replace("[5.0]", "[5.0, 1e39]"), "run",
     "axes.mean_arrival_rate[1]", "the range of float32"),
    ("float32 min_gain", FLOAT32.replace("[axes]", "[game]\nmin_gain = 1e39\n\n[axes]"), "init",
     "game.min_gain", "the range of float32"),
    ("float32 reward x rate", FLOAT32.replace("crbs = 4", "crbs = 4\nreward = 1e38"), "run",
     "setup.reward", "reward × arrival rate is 5.00e+38, above 8.50706e+37"),
    ("reward 1e308", sweep_with("crbs = 4", "crbs = 4\nreward = 1e308"), "run", "setup.reward",
     "reward × arrival rate is 5.00e+308, above 4.49423e+307, the most a utility term"),
    ("arrival axis x reward", sweep_with("crbs = 4", "crbs = 4\nreward = 1e300").replace(
        "[5.0]", "[5.0, 1e10]"), "run", "setup.reward", "reward × arrival rate is 1.00e+310"),
    ("payment", sweep_with("price_step = 0.5", "price_step = 1e299\nmax_price = 1e307"), "run",
     "setup.max_price", "payment_weight × max_price × (crbs + rrbs) is 2.40e+308"),
    ("solve reward 1e308", scenario_with(setter(("devices", 1, "reward"), 1e308)), "solve",
     "devices[1].reward", "reward × arrival rate is 8.00e+308"),
    ("solve payment weight", scenario_with(setter(("devices", 2, "payment_weight"), 1e306)),
     "solve", "devices[2].payment_weight", "payment_weight × max_price × (crbs + rrbs)"),
    ("solve server utility", scenario_with(setter(("servers", 1, "cost_crb"), 1e307)), "solve",
     "servers[1].cost_crb", "(crbs + rrbs) × cost_crb is 1.15e+309"),
    ("cycles 1e400", scenario_text_with('"cycles": 210000000.0', '"cycles": 1e400'), "solve",
     "models.tiny.layers[0].cycles", "must be finite, got inf"),
    ("cycles 10**400", scenario_text_with('"cycles": 210000000.0', '"cycles": 1' + "0" * 400),
     "solve", "models.tiny.layers[0].cycles", "must be finite, got an integer of 1329 bits"),
    ("cycles summed", scenario_text_with('"cycles": 210000000.0', '"cycles": 1e308').replace(
        '"cycles": 50000000.0', '"cycles": 1e308'), "solve", "models.tiny.layers",
     "the cycles of all layers summed exceed float64"),
    ("a 5000-digit integer", scenario_text_with('"crbs": 15', '"crbs": ' + "9" * 5000), "solve",
     "a_5000-digit_integer.json", "not valid JSON: Exceeds the limit (4300 digits)"),
    ("a 5000-digit TOML integer", sweep_with("seed = 1", "seed = " + "9" * 5000), "run",
     "sweep", "not valid TOML: Exceeds the limit (4300 digits)"),
    # files: nesting, duplicate keys, profiles naming the cell.
    ("TOML nested 500", SWEEP + "[game]\nupdate = " + deep(500) + "\n", "run", "sweep",
     f"nests arrays and tables deeper than {MAX_NESTING} levels"),
    ("TOML tables nested 500", "x = " + deep(500, "{a = ", "}") + "\n" + SWEEP, "init", "sweep",
     f"deeper than {MAX_NESTING} levels"),
    ("TOML dotted keys 500", SWEEP + ".".join(["a"] * 500) + " = 1\n", "run", "sweep",
     f"nests dotted keys deeper than {MAX_NESTING} levels"),
    ("JSON nested 500", '{"devices": ' + deep(500) + "}", "solve", "JSON_nested_500.json",
     f"nests arrays and tables deeper than {MAX_NESTING} levels"),
    ("duplicate JSON key", scenario_text_with('"reward": 1.0', '"reward": 1.0, "reward": 9.0'),
     "solve", "duplicate_JSON_key.json", "repeats the key 'reward' in one object"),
    ("profile bad cell", SWEEP.replace("[setup]", '[setup]\nmodels = ["bad_cell.csv"]'), "run",
     "setup.models[0]", "bad_cell.csv[3].fp_ops (line 5): must be a number, got 'abc'"),
]  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A sweep's existing store (its template, from ``edgesplit init``), which no refused
    command may change."""
    root = tmp_path_factory.mktemp("bounds")
    (root / "base.toml").write_text(SWEEP)
    assert main(["init", str(root / "base.toml"), "--out", str(root / "store.zarr")]) == 0
    (root / "bad_cell.csv").write_text(BAD_CELL)
    return root / "store.zarr"


def refused(argv, field, problem, capsys):
    """Run the command line on ``argv``: refused with status 2 and one line naming ``field``
    and ``problem``, nothing on stdout."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("edgesplit: error: "), err
    named = err.removeprefix("edgesplit: error: ").split(": ")[0]
    assert named == str(field) or named.endswith(f"/{field}"), err  # a file: by its path
    assert problem in err, err
    return err


@pytest.mark.parametrize("name, text, command, field, problem", CASES, ids=[c[0] for c in CASES])
def test_out_of_bounds_input_is_refused_cleanly(name, text, command, field, problem, store, capsys):
    suffix = ".json" if command == "solve" else ".toml"
    bad = store.parent / (name.replace(" ", "_") + suffix)
    bad.write_text(text)
    before = fingerprint(store)
    new = store.parent / "new.zarr"
    argv = [command, bad] if command == "solve" else [command, bad, "--out", store]
    refused(argv, field, problem, capsys)
    if command != "solve":
        refused([command, bad, "--out", new], field, problem, capsys)
    assert fingerprint(store) == before
    assert not new.exists()
    assert not [p for p in store.parent.iterdir() if p.name.startswith(".")], "a template left"


def test_the_bounds_depend_on_the_precision():
    """What float32 refuses, float64 takes: the bound is the precision's range."""
    parse_sweep(SWEEP.replace("crbs = 4", "crbs = 4\ncpu_hz = 1e39"))
    parse_sweep(SWEEP.replace("crbs = 4", "crbs = 4\nreward = 1e38"))
    parse_sweep(FLOAT32.replace("crbs = 4", "crbs = 4\nreward = 1e37"))  # 5e37 < 8.5e37
    assert FLOAT_MAX["float32"] == float(np.finfo(np.float32).max)


def test_bounds_at_the_edge_are_accepted():
    """The largest values within the bounds parse: the limits are not off by one."""
    edge = SWEEP.replace("num_devices = 3", "num_devices = 1").replace(
        "crbs = 4", f"crbs = {INT32_MAX - 20}"
    )
    assert parse_sweep(edge).setup.crbs == INT32_MAX - 20  # 1 × (crbs + 20 RRBs) = 2**31 - 1
    limits = GameSettings(max_rounds=INT32_MAX - 1, cycle_window=MAX_CYCLE_WINDOW)
    assert limits.max_rounds == INT32_MAX - 1
    with pytest.raises(InputError, match=r"game\.update: must be one of"):  # parsed, checked
        parse_sweep(SWEEP + "[game]\nupdate = " + deep(MAX_NESTING) + "\n")
    with pytest.raises(InputError, match="deeper than 64"):
        parse_sweep(SWEEP + "[game]\nupdate = " + deep(MAX_NESTING + 1) + "\n")
    # Brackets in strings and comments are text, not nesting.
    brackets = "[{" * 300
    parse_sweep(f'description = "{brackets}"  # {brackets}\n' + SWEEP)
    parse_sweep("description = '''" + brackets + "\n" + brackets + "'''\n" + SWEEP)
    scenario = json.loads(json.dumps(EXAMPLE))
    scenario["models"]["tiny"]["layers"][0]["name"] = brackets + '"\\'
    assert load_json(json.dumps(scenario), "scenario") == scenario


@pytest.mark.parametrize("command", ["run", "init", "solve"])
def test_devices_are_refused_not_read(command, tmp_path, capsys):
    """/dev/zero, read to its end, would never end: it is refused without being read."""
    out = [] if command == "solve" else ["--out", tmp_path / "s.zarr"]
    refused([command, "/dev/zero", *out], "/dev/zero", "is not a regular file (it is a ch", capsys)
    refused([command, tmp_path, *out], str(tmp_path), "is not a regular file (it is a di", capsys)
    assert not (tmp_path / "s.zarr").exists()


def test_files_above_the_size_cap_are_refused(tmp_path, capsys):
    big = tmp_path / "big.toml"
    big.write_text(SWEEP + "#" * (MAX_FILE_BYTES - len(SWEEP)))  # exactly the cap: read
    assert read_sweep(big).name == "base"
    with big.open("a") as file:
        file.write("\n")
    refused(["run", big, "--out", tmp_path / "s.zarr"], big, "is larger than 16 MiB", capsys)
    assert not (tmp_path / "s.zarr").exists()


def test_a_pipe_without_end_is_read_up_to_the_cap(tmp_path, capsys):
    """A pipe is read (a scenario may come from a process), but no further than the cap."""
    pipe = tmp_path / "endless.json"
    os.mkfifo(pipe)
    written = []

    def endless():
        block = b" " * 2**16
        with open(pipe, "wb") as out:
            try:
                while sum(written) < 8 * MAX_FILE_BYTES:  # a reader taking it all fails below
                    written.append(out.write(block))
                    out.flush()
            except BrokenPipeError:
                pass

    writer = threading.Thread(target=endless, daemon=True)
    writer.start()
    refused(["solve", pipe], pipe, "is larger than 16 MiB", capsys)
    writer.join(timeout=60)
    assert sum(written) < 2 * MAX_FILE_BYTES


def test_solve_prints_strict_json(tmp_path, capsys):
    """A solve's output parses as strict JSON: no NaN, no Infinity."""
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(EXAMPLE))
    capsys.readouterr()
    assert main(["solve", str(path)]) == 0

    def refuse(token):
        raise AssertionError(f"{token} in the output of solve")

    solution = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert isinstance(solution["certificate"], float) and math.isfinite(solution["certificate"])
    for device in solution["devices"]:
        assert (device["delay"] is None) == (device["split"] is None)


def test_undefined_values_print_as_null():
    """An idle device's delay, and any float that is not finite, become null, so the
    document stays strict JSON whatever a solution holds."""
    ints = lambda *v: np.array(v, np.int32)  # noqa: E731
    floats = lambda *v: np.array(v, np.float64)  # noqa: E731
    solution = Solution(
        devices=Choice(
            server=ints(0, IDLE), split=ints(2, IDLE), crbs=ints(3, 0), rrbs=ints(5, 0),
            utility=floats(1.5, 0.0), delay=floats(math.inf, math.nan),
        ),
        price_crb=floats(math.inf), price_rrb=floats(2.0), server_utility=floats(math.nan),
        crbs_sold=ints(3), rrbs_sold=ints(5), rounds=np.int32(7), status=np.int32(0),
        cycle_length=np.int32(0), equilibria=np.int32(-1),
        cycle_device_utility=floats(math.nan, 0.0), cycle_server_utility=floats(math.inf),
        device_violation=np.float64(math.inf), server_regret=floats(math.nan),
        local_server_violation=np.float64(0.0),
    )  # fmt: skip
    document = solution_to_json(solution)
    text = json.dumps(document, allow_nan=False)
    assert json.loads(text)["devices"][1] == {
        "server": None, "split": None, "crbs": 0, "rrbs": 0, "utility": 0.0, "delay": None,
        "cycle_utility": 0.0,
    }  # fmt: skip
    assert document["devices"][0]["cycle_utility"] is None
    assert document["devices"][0]["delay"] is None
    assert document["servers"][0]["price_crb"] is None
    assert document["servers"][0]["utility"] is None
    assert document["device_violation"] is None and document["certificate"] is None
    assert document["local_server_violation"] == 0.0 and document["rounds"] == 7
    assert document["servers"][0]["regret"] is None and document["equilibria"] is None


def test_profile_errors_name_row_and_column(tmp_path):
    """A profile's bad cell is named by row and column (and a CSV file's line)."""
    path = tmp_path / "profile.csv"
    path.write_text(BAD_CELL)
    with pytest.raises(InputError) as err:
        load_profile(path)
    assert err.value.field == f"{path}[3].fp_ops (line 5)"
    assert err.value.problem == "must be a number, got 'abc'"
    rows = [{"layer": "c1", "input": 10, "output": 20, "fp_ops": 5}, {"input": 1, "output": 2}]
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(InputError) as err:
        load_profile(path)
    assert err.value.field == f"{path}[1].layer" and err.value.problem == "missing"
    rows[1]["layer"] = "fc"
    path.write_text(json.dumps(rows))
    with pytest.raises(InputError) as err:
        load_profile(path)
    assert err.value.field == f"{path}[1].fp_ops"


def test_the_table_is_large_enough():
    assert len(CASES) >= 30
    assert len({c[3] for c in CASES}) >= 20  # many different fields named
