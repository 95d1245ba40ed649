"""DNN partition tables and profile loading."""

from __future__ import annotations

import csv
import json
from importlib import resources

import numpy as np
import pytest

from edgesplit.errors import InputError
from edgesplit.model.dnn import (
    BITS_PER_ELEMENT,
    REFERENCE_CLOCK_HZ,
    DnnModel,
    builtin_model,
    builtin_profile,
    calibrated_cycles_per_flop,
    load_profile,
    model_from_profile,
    partition_table,
)

DATA = resources.files("edgesplit") / "data"


def read_csv(name):
    return list(csv.DictReader((DATA / name).read_text().splitlines()))


def test_partition_table_follows_the_split_definition():
    model = DnnModel("m", ("a", "b", "c"), (1.0, 2.0, 4.0), (10.0, 20.0, 30.0), 5.0)
    table = partition_table(model)
    # α = 0: nothing on the device, the input is sent; α = N: all local, nothing sent.
    np.testing.assert_array_equal(table.device_cycles, [0, 1, 3, 7])
    np.testing.assert_array_equal(table.server_cycles, [7, 6, 4, 0])
    np.testing.assert_array_equal(table.sent_bits, [5, 10, 20, 0])
    assert table.num_layers == 3


@pytest.mark.parametrize("name, stem", [("alexnet", "imc"), ("asr", "asr"), ("face", "face")])
def test_builtin_models_use_measured_mobile_gpu_latency(name, stem):
    rows = read_csv(f"{stem}.csv")
    latency = {
        r["layer"]: float(r["lat_ms"])
        for r in read_csv("latency-mobile-gpu-ms.csv")
        if r["model"] == stem
    }
    model = builtin_model(name)
    assert model.layer_names == tuple(r["layer"] for r in rows)
    expected = [latency[r["layer"]] * 1e-3 * REFERENCE_CLOCK_HZ for r in rows]
    np.testing.assert_allclose(model.layer_cycles, expected, rtol=1e-12)
    assert model.input_bits == float(rows[0]["input"]) * BITS_PER_ELEMENT
    np.testing.assert_allclose(model.output_bits, [float(r["output"]) * 32 for r in rows])


def test_alexnet_runs_in_its_measured_82_ms_on_the_default_device():
    seconds = sum(builtin_model("alexnet").layer_cycles) / REFERENCE_CLOCK_HZ
    assert seconds == pytest.approx(0.0818, abs=1e-4)


def test_flop_based_cycles_are_calibrated_on_alexnet():
    alexnet = builtin_profile("alexnet")
    by_flops = model_from_profile(alexnet, "flops")
    by_latency = model_from_profile(alexnet, "latency")
    assert sum(by_flops.layer_cycles) == pytest.approx(sum(by_latency.layer_cycles), rel=1e-12)
    per_flop = calibrated_cycles_per_flop()
    vgg = builtin_model("vgg")  # no measured latency: FLOPs
    flops = [float(r["fp_ops"]) for r in read_csv("vgg.csv")]
    np.testing.assert_allclose(vgg.layer_cycles, np.array(flops) * per_flop, rtol=1e-12)
    with pytest.raises(InputError, match="no measured latencies"):
        model_from_profile(builtin_profile("vgg"), "latency")


def test_other_latency_platforms_load():
    cpu = builtin_profile("alexnet", "mobile-cpu")
    gpu = builtin_profile("alexnet", "mobile-gpu")
    assert sum(cpu.latency_ms) > sum(gpu.latency_ms)


def test_user_profiles_load_from_csv_and_json(tmp_path):
    rows = read_csv("face.csv")
    (tmp_path / "mine.csv").write_text((DATA / "face.csv").read_text())
    as_json = [{k: float(v) if k != "layer" else v for k, v in r.items()} for r in rows]
    (tmp_path / "mine.json").write_text(json.dumps({"layers": as_json}))
    from_csv = load_profile(tmp_path / "mine.csv")
    from_json = load_profile(tmp_path / "mine.json")
    assert from_csv == from_json
    assert from_csv.name == "mine" and from_csv.latency_ms is None
    assert (
        model_from_profile(from_csv).layer_cycles
        == model_from_profile(builtin_profile("face"), "flops").layer_cycles
    )


@pytest.mark.parametrize(
    "text, field, problem",
    [
        ("layer,input,output\nconv,1,2\n", "fp_ops", "missing column"),
        ("layer,input,output,fp_ops\n", "mine.csv", "no layers"),
        ("layer,input,output,fp_ops\nconv,1,2,many\n", "[0].fp_ops", "must be a number"),
        ("layer,input,output,fp_ops\nconv,1,-2,3\n", "[0].output", "must be >= 0"),
        ("layer,input,output,fp_ops\nconv,0,2,3\n", "[0].input", "> 0 elements"),
        ("layer,input,output,fp_ops\nconv,1,nan,3\n", "[0].output", "must be finite"),
    ],
)
def test_bad_profiles_name_the_field(tmp_path, text, field, problem):
    path = tmp_path / "mine.csv"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_profile(path)
    assert field in err.value.field and problem in err.value.problem
    assert "\n" not in str(err.value)


def test_models_need_layers():
    with pytest.raises(InputError, match="at least one layer"):
        DnnModel("empty", (), (), (), 1.0)
    with pytest.raises(InputError, match="cycles"):
        DnnModel("neg", ("a",), (-1.0,), (1.0,), 1.0)
