"""The examples do what examples/README.md says they do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgesplit
from edgesplit.cli import main
from edgesplit.model.dnn import load_profile, model_from_profile

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def solve(capsys, name: str, *options: str) -> dict:
    """``edgesplit solve examples/NAME OPTIONS`` as printed."""
    assert main(["solve", str(EXAMPLES / name), *options]) == 0
    return json.loads(capsys.readouterr().out)


def test_capacity_binds(capsys):
    """Seven MDs, two ESs of 3 CRBs: both ESs sell every CRB, one CRB to each of six MDs,
    the seventh is idle; the game converges to an equilibrium (certificate 0). At the
    file's fixed prices the sales are the same."""
    scenario = json.loads((EXAMPLES / "capacity.json").read_text())
    assert [s["crbs"] for s in scenario["servers"]] == [3, 3]
    assert len(scenario["devices"]) == 7
    assert all(d["arrival_rate"] == 14.0 and d["model"] == "alexnet" for d in scenario["devices"])
    game = solve(capsys, "capacity.json")
    assert game["status"] == "converged" and game["certificate"] == pytest.approx(0, abs=1e-12)
    assert [s["crbs_sold"] for s in game["servers"]] == [3, 3]
    assert [s["price_crb"] for s in game["servers"]] == pytest.approx([6.35, 6.35])
    buyers = [d for d in game["devices"] if d["server"] is not None]
    assert len(buyers) == 6 and all(d["crbs"] == 1 for d in buyers)
    idle = [d for d in game["devices"] if d["server"] is None]
    assert len(idle) == 1 and idle[0]["split"] is None and idle[0]["utility"] == 0.0
    fixed = solve(capsys, "capacity.json", "--fixed-prices")
    assert [s["price_crb"] for s in fixed["servers"]] == [6.0, 6.0]
    assert [s["crbs_sold"] for s in fixed["servers"]] == [3, 3]


def test_cycle_ends_in_a_cycle(capsys):
    game = solve(capsys, "cycle.json")
    assert game["status"] == "cycle" and not game["converged"]
    assert game["cycle_length"] == 4 and game["rounds"] == 76
    assert game["certificate"] > 0.0
    assert solve(capsys, "cycle.json", "--scheme", "heuristic")["status"] == "converged"


def test_custom_profile_sweep_splits_after_the_stem():
    """feature-net.csv's figures, and how the sweep's MDs run it: whole at 6 and 12
    tasks/s; at 18, every MD that offloads it splits it after the stem (α = 1)."""
    profile = load_profile(EXAMPLES / "feature-net.csv")
    assert profile.input_elements / profile.output_elements[0] == pytest.approx(12, abs=0.01)
    assert profile.fp_ops[0] / sum(profile.fp_ops) == pytest.approx(0.03, abs=0.001)
    model = model_from_profile(profile)
    local_limit = edgesplit.Setup().cpu_hz / sum(model.layer_cycles)
    assert round(local_limit, 1) == 16.8

    ds = edgesplit.run(edgesplit.read_sweep(EXAMPLES / "custom-profile.toml"))
    assert ds.attrs["models"] == ["alexnet", "feature-net.csv"]
    runs_it = (ds.model == 1) & ds.device_active
    split = ds.split.sel(scheme="proposed").where(runs_it)
    offloads = ds.association.sel(scheme="proposed").where(runs_it) >= 0
    for rate in (6, 12):
        at = split.sel(mean_arrival_rate=rate).values
        assert (at[~np.isnan(at)] == model.num_layers).all() and (~np.isnan(at)).sum() > 0
    at_18 = split.sel(mean_arrival_rate=18).values[offloads.sel(mean_arrival_rate=18).values]
    assert len(at_18) > 0 and (at_18 == 1).all()


def test_the_tutorial_runs(monkeypatch):
    """examples/tutorial.py, as a reader runs it, from a sweep to a paired conclusion:
    its comparison, figures, and a game exported from the sweep and traced to where the
    sweep's game ended."""
    import runpy

    from matplotlib.figure import Figure

    monkeypatch.chdir(EXAMPLES.parent)
    names = runpy.run_path(str(EXAMPLES / "tutorial.py"), run_name="__main__")
    assert names["result"].scheme.values.tolist() == ["proposed", "edge_only", "user_only"]
    assert int(names["result"].n.min()) == 8
    assert isinstance(names["figure"], Figure) and len(names["figure"].axes) == 6
    at = names["games"].sel(topology=names["topology"])
    assert names["story"].rounds == int(at.rounds) and names["story"].status == int(at.status)
    np.testing.assert_array_equal(names["story"].price_crb[-1], at.price_crb.values)
