"""From a store to a conclusion: paired comparisons against scipy, the summary against a
direct computation, figures of a store with several axes, a game traced round by round
to where ``solve`` ends, and a topology exported and solved again to the stored bits."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure
from scipy import optimize, stats

import edgesplit
from conftest import tiny_problem
from edgesplit import reference
from edgesplit.analysis.plots import SCHEME_COLOURS, plot, trace_figure
from edgesplit.analysis.statistics import compare, summary, wilson
from edgesplit.analysis.tables import TableFormat, comparison_tables, summary_table
from edgesplit.analysis.trace import trace
from edgesplit.cli import main
from edgesplit.config import GameSettings
from edgesplit.errors import InputError, Interrupted
from edgesplit.game.algorithm1 import Status
from edgesplit.game.solve import solve
from edgesplit.io.scenario_file import parse_scenario
from edgesplit.io.sweep_file import parse_sweep
from edgesplit.model.scenario import pad_scenario
from edgesplit.model.schemes import Scheme
from edgesplit.sweep.runner import run_sweep
from edgesplit.sweep.store import open_store

# Two schemes and three parameters swept: padded devices and servers, games that
# converge and games that cycle (asserted below).
STORE = """
name = "analysis"
schemes = ["proposed", "heuristic"]
topologies = 6
seed = 7
chunk = 6

[setup]
crbs = 6
rrbs = 30
price_step = 0.25
models = ["alexnet", "face"]

[axes]
num_servers = [1, 2]
num_devices = [3, 6]
mean_arrival_rate = [4.0, 13.0]
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("analysis") / "analysis.zarr"
    run_sweep(parse_sweep(STORE), path, progress=False)
    return path


@pytest.fixture(scope="module")
def ds(store):
    return open_store(store)


def topology_means(ds, variable, **at):
    """(topology,) each topology's mean of ``variable`` over its real devices or
    servers, by loops."""
    point = ds.sel(**at)
    values = point[variable].values
    if "device" in point[variable].dims:
        active = point.device_active.values
    elif "server" in point[variable].dims:
        active = point.server_active.values
    else:
        return values.astype(float)
    means = []
    for row, real in zip(values, active, strict=True):
        kept = [float(v) for v, a in zip(row, real, strict=True) if a and not np.isnan(v)]
        means.append(sum(kept) / len(kept) if kept else np.nan)
    return np.array(means)


def test_compare_is_scipy_paired_t_test(ds):
    """Every difference, interval and p-value as scipy's paired t-test on the
    per-topology values computed by loops; the baseline left out."""
    for variable in ("device_utility", "server_utility", "certificate"):
        result = compare(ds, variable, "heuristic", confidence=0.9)
        assert result.scheme.values.tolist() == ["proposed"]
        assert result.attrs["method"] == "t" and "paired" in result.attrs["interval"]
        checked = 0
        for point in result.drop_vars("scheme").squeeze("scheme").to_dataframe().itertuples():
            at = dict(zip(result.difference.dims[1:], point.Index, strict=True))
            ours = topology_means(ds, variable, scheme="proposed", **at)
            theirs = topology_means(ds, variable, scheme="heuristic", **at)
            got = result.sel(scheme="proposed", **at)
            assert int(got.n) == len(ours) == 6
            test = stats.ttest_rel(ours, theirs)
            np.testing.assert_allclose(float(got.difference), np.mean(ours - theirs), atol=1e-12)
            if np.all(ours == theirs):
                assert float(got.p_value) == 1.0 and float(got.low) == float(got.high) == 0.0
                continue
            low, high = test.confidence_interval(0.9)
            np.testing.assert_allclose([float(got.low), float(got.high)], [low, high], rtol=1e-9)
            np.testing.assert_allclose(float(got.p_value), test.pvalue, rtol=1e-9)
            checked += 1
        assert checked >= 2, (variable, checked)


def test_compare_along_another_dim_keeps_the_schemes(ds):
    """Along a swept parameter: the first three MDs of a topology are those of its
    six-MD version, so the two are paired too."""
    result = compare(ds, "server_utility", 6, along="num_devices")
    assert result["num_devices"].values.tolist() == [3]
    assert set(result.difference.dims) == {
        "scheme", "num_devices", "num_servers", "mean_arrival_rate"
    }  # fmt: skip
    at = {"scheme": "proposed", "num_servers": 2, "mean_arrival_rate": 13.0}
    ours = topology_means(ds, "server_utility", num_devices=3, **at)
    theirs = topology_means(ds, "server_utility", num_devices=6, **at)
    got = result.sel(num_devices=3, **at)
    np.testing.assert_allclose(float(got.difference), np.mean(ours - theirs), atol=1e-12)


def test_labels_are_read_as_the_command_line_gives_them():
    """Game settings as labels: strings and booleans, named as on the command line."""
    rng = np.random.default_rng(2)
    data = xr.Dataset(
        {"certificate": (("leader", "joint_price", "topology"), rng.normal(size=(2, 2, 9)))},
        coords={"leader": ["local", "best_response"], "joint_price": [True, False]},
    )
    by_rule = compare(data, "certificate", "local", along="leader")
    by_price = compare(data, "certificate", "true", along="joint_price")
    assert by_rule["leader"].values.tolist() == ["best_response"]
    assert by_price["joint_price"].values.tolist() == [False]
    expected = data.certificate.sel(joint_price=False) - data.certificate.sel(joint_price=True)
    np.testing.assert_allclose(by_price.difference.squeeze(), expected.mean("topology"))
    with pytest.raises(InputError, match=r"^--baseline: joint_price has no label 'yes'"):
        compare(data, "certificate", "yes", along="joint_price")
    with pytest.raises(InputError, match=r"^--along: must be a labelled dim"):
        compare(data, "certificate", "local", along="topology")


def test_bootstrap_interval_is_seeded_and_near_t_on_normal_data():
    rng = np.random.default_rng(5)
    data = xr.Dataset(
        {"certificate": (("scheme", "topology"), rng.normal([[0.0], [0.3]], 1.0, (2, 400)))},
        coords={"scheme": ["heuristic", "proposed"]},
    )
    t = compare(data, "certificate", "heuristic")
    boot = compare(data, "certificate", "heuristic", method="bootstrap", resamples=4000, seed=3)
    again = compare(data, "certificate", "heuristic", method="bootstrap", resamples=4000, seed=3)
    other = compare(data, "certificate", "heuristic", method="bootstrap", resamples=4000, seed=4)
    assert boot.identical(again) and not boot.low.equals(other.low)
    assert boot.attrs["resamples"] == 4000 and "bootstrap" in boot.attrs["interval"]
    # The mean of 400 normal differences is normal: both intervals agree to a few %.
    np.testing.assert_allclose(boot.low, t.low, rtol=0.08)
    np.testing.assert_allclose(boot.high, t.high, rtol=0.08)
    assert boot.p_value.item() == t.p_value.item()  # the t-test, whatever the interval


def test_wilson_is_the_score_test_inverted():
    """The Wilson interval holds the shares p whose score test |x/n - p| <= z·sqrt(p(1 -
    p)/n) accepts, found here by root finding."""
    z = stats.norm.ppf(0.975)
    for successes, trials in ((0, 40), (20, 40), (39, 40), (3, 7)):
        share = successes / trials

        def score(p, share=share, trials=trials):
            return abs(share - p) - z * np.sqrt(p * (1 - p) / trials)

        inside = min(max(share, 1e-12), 1 - 1e-12)  # where the test accepts
        low = 0.0 if successes == 0 else optimize.brentq(score, 1e-12, inside)
        high = 1.0 if successes == trials else optimize.brentq(score, inside, 1 - 1e-12)
        np.testing.assert_allclose(wilson(successes, trials, 0.95), (low, high), atol=1e-9)


def test_summary_matches_a_direct_computation(ds):
    result = summary(ds, confidence=0.95)
    at = {"scheme": "proposed", "num_servers": 2, "num_devices": 6}
    for rate in (4.0, 13.0):
        point = result.sel(mean_arrival_rate=rate, **at)
        md = topology_means(ds, "device_utility", mean_arrival_rate=rate, **at)
        low, high = stats.t.interval(0.95, len(md) - 1, md.mean(), stats.sem(md))
        np.testing.assert_allclose(float(point.md_utility), md.mean(), rtol=1e-12)
        np.testing.assert_allclose([point.md_utility_low, point.md_utility_high], [low, high])
        games = ds.sel(mean_arrival_rate=rate, **at)
        equilibria = int(np.sum(games.certificate.values <= ds.attrs["min_gain"]))
        assert float(point.equilibrium) == equilibria / 6
        assert (float(point.equilibrium_low), float(point.equilibrium_high)) == wilson(
            equilibria, 6, 0.95
        )
        idle = [
            np.mean(split[active] == -1)
            for split, active in zip(games.split.values, games.device_active.values, strict=True)
        ]
        np.testing.assert_allclose(float(point.idle), np.mean(idle), rtol=1e-12)
        assert int(point.n) == 6
    text = summary_table(result)
    assert "6 of 6 topologies" in text and "Wilson" in text
    csv = summary_table(result, TableFormat.CSV)
    assert csv.splitlines()[0].startswith("scheme,num_servers,num_devices,mean_arrival_rate")
    assert len(csv.splitlines()) == 1 + 2 * 8


def test_equilibrium_is_the_certificate_within_min_gain(ds):
    """open_store's variable: 1 at most min_gain, else 0 (NaN without a certificate:
    tests/test_sweep.py)."""
    expected = np.where(ds.certificate.values <= ds.attrs["min_gain"], 1.0, 0.0)
    np.testing.assert_array_equal(ds.equilibrium.values, expected)
    assert 0 < ds.equilibrium.mean() < 1


def test_figures_of_a_store_with_several_axes(ds):
    figure = plot(ds, baseline="heuristic", num_servers=2, num_devices=6)
    assert len(figure.axes) == 6
    md, diff = figure.axes[0], figure.axes[2]
    assert md.get_xlabel() == "mean arrival rate λ (tasks/s)"
    assert "minus heuristic, paired" in diff.get_title()
    proposed = [line for line in md.get_lines() if line.get_label().startswith("proposed")]
    assert {line.get_color() for line in proposed} == {SCHEME_COLOURS["proposed"]}
    # Along the number of MDs, the same colours and a label without a unit of "1".
    by_size = plot(ds, num_servers=1, mean_arrival_rate=13.0)
    assert by_size.axes[0].get_xlabel() == "number of MDs"
    lines = by_size.axes[0].get_lines()
    heuristic = [line for line in lines if line.get_label() == "heuristic"]
    assert heuristic[0].get_color() == SCHEME_COLOURS["heuristic"]
    with pytest.raises(InputError, match=r"^--sel: a figure has one x axis"):
        plot(ds, num_servers=2)


def test_cli_plots_summarizes_and_compares(store, tmp_path, capsys):
    image = tmp_path / "figure.png"
    sel = ["--sel", "num_devices=6", "--sel", "num_servers=2"]
    assert main(["plot", str(store), "-o", str(image), "--baseline", "heuristic", *sel]) == 0
    figure = image.read_bytes()
    assert figure[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left

    def cut_short(self, path, **options):  # SIGTERM half-way through writing the figure
        Path(path).write_bytes(b"\x89PNG half")
        raise Interrupted(signal.SIGTERM)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figure, "savefig", cut_short)
        assert main(["plot", str(store), "-o", str(image), *sel]) == 128 + signal.SIGTERM
    assert image.read_bytes() == figure  # the last figure stays whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    capsys.readouterr()
    assert main(["summarize", str(store), "--baseline", "heuristic", "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(",")[:3] == ["variable", "scheme", "num_servers"]
    assert len(lines) == 1 + 2 * 8  # two variables at 8 points
    argv = ["summarize", str(store), "--baseline", "6", "--along", "num_devices", "--markdown"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("| scheme | num_servers | num_devices |") and "paired Student t" in out


def test_comparison_tables_in_csv_name_each_variable(ds):
    results = [compare(ds, v, "heuristic") for v in ("device_utility", "certificate")]
    csv = comparison_tables(results, TableFormat.CSV).splitlines()
    assert {line.split(",")[0] for line in csv[1:]} == {"device_utility", "certificate"}


# --- One game's story ----------------------------------------------------------------

LEVELS = 42  # every grid of the problems below: max price 4.0 / step 0.1, and one more


def tiny_game(rng):
    problem = tiny_problem(rng, num_devices=5, price_step=(0.1, 0.2), max_price=(2.0, 4.0))
    return problem, pad_scenario(parse_scenario(problem).scenario, 5, 2, 3)


RULES = [
    ("local", "simultaneous"),
    ("local", "sequential"),
    ("best_response", "simultaneous"),
    ("best_response", "sequential"),
    ("enumerate", "simultaneous"),
]


@pytest.mark.parametrize("leader, update", RULES, ids=["-".join(r) for r in RULES])
def test_a_trace_ends_where_solve_ends(rng, leader, update):
    """The last state is solve's: the same prices to the bit, rounds, status and cycle;
    every state before it is the reference's after as many rounds."""
    settings = GameSettings(
        leader=leader, update=update, price_levels=LEVELS, grid_certificate=False
    )
    games = 4 if leader == "enumerate" else 12
    statuses = set()
    for case in range(games):
        problem, scenario = tiny_game(rng)
        scheme = (Scheme.PROPOSED, Scheme.EDGE_ONLY, Scheme.HEURISTIC)[case % 3]
        solved = solve(scenario, scheme, settings)
        traced = trace(scenario, scheme, settings)
        where = f"case {case}"
        np.testing.assert_array_equal(traced.price_crb[-1], solved.price_crb, err_msg=where)
        np.testing.assert_array_equal(traced.price_rrb[-1], solved.price_rrb, err_msg=where)
        assert traced.rounds == int(solved.rounds), where
        assert traced.status == int(solved.status), where
        assert traced.cycle_length == int(solved.cycle_length) == traced.in_cycle.sum(), where
        statuses.add(traced.status)
        if leader != "enumerate" and case < 4 and traced.rounds <= 30:
            play = reference.play if leader == "local" else reference.play_best_response
            for r in range(1, traced.rounds + 1):
                steps, _, _ = play(problem, int(scheme), update=update, max_rounds=r)
                np.testing.assert_array_equal(traced.steps[r], steps, err_msg=f"{where} {r}")
    if update == "simultaneous" and leader != "enumerate":
        assert {Status.CONVERGED, Status.CYCLE} <= statuses, statuses


def test_trace_marks_the_descent_and_draws_the_cycle(rng, tmp_path, capsys):
    """Algorithm 1's fast-forwarded rounds and the cycle states are marked in the trace,
    its JSON and its figure, and the command line prints them."""
    settings = GameSettings(price_levels=LEVELS, grid_certificate=False)
    for _ in range(60):
        problem, scenario = tiny_game(rng)
        traced = trace(scenario, Scheme.PROPOSED, settings)
        if traced.status == Status.CYCLE and traced.fast_forwarded.any():
            break
    else:
        pytest.fail("no cycle after a fast-forward drawn")
    skipped = int(traced.fast_forwarded.sum())
    assert traced.fast_forwarded[1 : skipped + 1].all() and np.all(
        traced.server_utility[:skipped] == 0
    )
    document = json.loads(json.dumps(traced.to_json(), allow_nan=False))
    assert document["status"] == "cycle" and document["rounds"] == traced.rounds
    assert [s["in_cycle"] for s in document["states"]].count(True) == traced.cycle_length
    figure = trace_figure(traced)
    assert any("cycle of" in text.get_text() for text in figure.axes[0].get_legend().get_texts())
    path = tmp_path / "game.json"
    path.write_text(json.dumps({**problem, "game": {"price_levels": LEVELS}}))
    image = tmp_path / "game.png"
    assert main(["trace", str(path), "-o", str(image)]) == 0
    out = capsys.readouterr().out
    assert "fast-forwarded" in out and "cycle" in out.splitlines()[-2]
    assert out.rstrip().endswith(f"a cycle of {traced.cycle_length} rounds")
    assert image.stat().st_size > 10_000


# --- A game out of a store -----------------------------------------------------------

COMPARED = (
    "association", "split", "crbs_bought", "rrbs_bought", "device_utility",
    "cycle_device_utility", "price_crb", "price_rrb", "server_utility",
    "cycle_server_utility", "crbs_sold", "rrbs_sold", "rounds", "status", "cycle_length",
    "server_regret", "certificate", "local_certificate",
)  # fmt: skip


def solved_as_stored(solution) -> dict:
    devices = solution.devices
    return {
        "association": devices.server, "split": devices.split, "crbs_bought": devices.crbs,
        "rrbs_bought": devices.rrbs, "device_utility": devices.utility,
        "cycle_device_utility": solution.cycle_device_utility, "delay": devices.delay,
        "price_crb": solution.price_crb, "price_rrb": solution.price_rrb,
        "server_utility": solution.server_utility,
        "cycle_server_utility": solution.cycle_server_utility,
        "crbs_sold": solution.crbs_sold, "rrbs_sold": solution.rrbs_sold,
        "rounds": solution.rounds, "status": solution.status,
        "cycle_length": solution.cycle_length, "server_regret": solution.server_regret,
        "certificate": solution.certificate, "local_certificate": solution.local_certificate,
    }  # fmt: skip


# (num_servers, num_devices): padding wherever they are below the most.
EXPORTED = [(2, 6), (1, 3)]


@pytest.mark.parametrize("servers, devices", EXPORTED)
def test_an_exported_topology_solves_to_the_stored_game(ds, servers, devices):
    """``solve`` of the exported scenario gives the stored choices, prices, utilities,
    rounds, statuses and certificates to the last bit (the delays to rounding: the
    sweep's game queue and solve compute them in differently fused programs)."""
    statuses = set()
    for topology in range(6):
        for rate in (4.0, 13.0):
            at = dict(num_servers=servers, num_devices=devices)
            exported = edgesplit.scenario_of(ds, topology, **at, mean_arrival_rate=rate)
            document = json.loads(json.dumps(exported))
            assert document["source"]["point"]["mean_arrival_rate"] == rate
            parsed = parse_scenario(document)
            assert parsed.scenario.devices.num_devices == devices
            assert parsed.scenario.servers.num_servers == servers
            stored = ds.sel(topology=topology, mean_arrival_rate=rate, **at)
            for scheme in ("proposed", "heuristic"):
                got = solved_as_stored(
                    solve(parsed.scenario, Scheme.parse(scheme), parsed.settings)
                )
                want = stored.sel(scheme=scheme)
                for name in COMPARED:
                    value = want[name].values
                    if value.ndim:
                        value = value[: (devices if "device" in want[name].dims else servers)]
                    np.testing.assert_array_equal(got[name], value, err_msg=f"{topology} {name}")
                np.testing.assert_allclose(
                    got["delay"], want.delay.values[:devices], rtol=1e-14, equal_nan=True
                )
                statuses.add(int(want.status))
    assert statuses == {Status.CONVERGED, Status.CYCLE} or servers == 1, statuses


def test_cli_export_then_solve_reproduces_the_store(store, ds, tmp_path, capsys):
    scenario = tmp_path / "game.json"
    sel = ["--sel", "num_servers=2", "--sel", "num_devices=6"]
    assert main(["export", str(store), "--topology", "4", *sel, "--sel",
                 "mean_arrival_rate=13", "-o", str(scenario)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["solve", str(scenario), "--scheme", "heuristic"]) == 0
    solution = json.loads(capsys.readouterr().out)
    stored = ds.sel(
        scheme="heuristic", topology=4, num_servers=2, num_devices=6, mean_arrival_rate=13.0
    )
    assert [s["price_crb"] for s in solution["servers"]] == stored.price_crb.values.tolist()
    assert [d["utility"] for d in solution["devices"]] == stored.device_utility.values.tolist()
    assert solution["rounds"] == int(stored.rounds)
    with pytest.raises(InputError, match=r"^--topology: must be in 0\.\.5"):
        edgesplit.scenario_of(ds, 6, num_servers=1, num_devices=3, mean_arrival_rate=4.0)
    with pytest.raises(InputError, match=r"^--sel: the store sweeps num_servers"):
        edgesplit.scenario_of(ds, 0)
