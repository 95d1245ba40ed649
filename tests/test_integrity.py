"""A store cannot lie: damaged chunks are found, named and solved again; a store takes
no results of other inputs or another build; unfinished values read as missing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from test_bad_input import fingerprint
from test_sweep import TINY

import edgesplit
from edgesplit.cli import main
from edgesplit.io.sweep_file import parse_sweep
from edgesplit.sweep import identity
from edgesplit.sweep.identity import build
from edgesplit.sweep.schema import SCHEMA
from edgesplit.sweep.store import dims_of, open_store, template

CHUNK = 1  # the chunk the damage tests harm (of 3)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """TINY's sweep file and its finished store, solved once for the module."""
    root = tmp_path_factory.mktemp("integrity")
    (root / "tiny.toml").write_text(TINY)
    assert main(["run", str(root / "tiny.toml"), "--out", str(root / "tiny.zarr"), "--quiet"]) == 0
    return root / "tiny.toml", root / "tiny.zarr"


def raw(path: Path) -> dict[str, bytes]:
    """Every array of a store as stored, and its attributes."""
    group = zarr.open_group(str(path), mode="r")
    out = {name: group[name][:].tobytes() for name in group.array_keys()}
    out["attrs"] = json.dumps(group.attrs.asdict(), sort_keys=True).encode()
    return out


def files_of(store: Path, index: int) -> list[Path]:
    """The data files of chunk ``index``, one per stored variable."""
    sweep = parse_sweep(TINY)
    return [
        store
        / name
        / ".".join(str(index) if d == "topology" else "0" for d in dims_of(name, sweep))
        for name in SCHEMA
    ]


def delete(store: Path) -> None:
    files_of(store, CHUNK)[5].unlink()


def truncate(store: Path) -> None:
    victim = files_of(store, CHUNK)[4]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])


def flip_a_bit(store: Path) -> None:
    victim = files_of(store, CHUNK)[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x10
    victim.write_bytes(bytes(data))


def forge_a_record(store: Path) -> None:
    """A record for a chunk that holds no data: its files gone, checksum unset."""
    for path in files_of(store, CHUNK):
        path.unlink()
    zarr.open_group(str(store), mode="r+")["chunk_checksum"][CHUNK] = 0


DAMAGES = {"delete": delete, "truncate": truncate, "bit-flip": flip_a_bit, "forged": forge_a_record}
CHEAPLY_FOUND = {"delete", "forged"}  # without reading data back: `run` finds these


def one_error_line(capsys, *words) -> None:
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("edgesplit: error: "), err
    for word in words:
        assert word in err, err


@pytest.mark.parametrize("damage", DAMAGES)
def test_damage_is_found_named_and_repaired(damage, finished, tmp_path, capsys):
    sweep_file, reference = finished
    store = tmp_path / "tiny.zarr"
    shutil.copytree(reference, store)
    DAMAGES[damage](store)
    capsys.readouterr()

    assert main(["verify", str(store)]) == 1
    out, _ = capsys.readouterr()
    assert out.splitlines() and all(
        line.startswith(f"chunk {CHUNK}: ") for line in out.splitlines()
    )

    damaged = fingerprint(store)
    assert main(["summarize", str(store)]) == 2
    one_error_line(capsys, f"chunk {CHUNK} is damaged")
    if damage in CHEAPLY_FOUND:  # a rerun does not call the store complete
        assert main(["run", str(sweep_file), "--out", str(store), "--quiet"]) == 2
        one_error_line(capsys, f"chunk {CHUNK} is recorded but")
    assert fingerprint(store) == damaged  # refusing changed nothing

    assert main(["verify", str(store), "--repair"]) == 1
    assert main(["verify", str(store)]) == 0
    capsys.readouterr()
    assert main(["run", str(sweep_file), "--out", str(store), "--quiet"]) == 0
    assert raw(store) == raw(reference)  # as if never damaged, bit for bit


def test_a_sound_store_verifies(finished, capsys):
    assert main(["verify", str(finished[1])]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "3 of 3 recorded chunks verified" in err


def test_unfinished_values_read_as_missing(finished, tmp_path):
    """A partial store: under xr.open_zarr every unfinished value is NaN, none a zero or
    a False that could pass as a result; open_store keeps the finished topologies only,
    each variable in its own dtype."""
    store = tmp_path / "partial.zarr"
    shutil.copytree(finished[1], store)
    for path in files_of(store, CHUNK):
        path.unlink()
    zarr.open_group(str(store), mode="r+")["chunk_done"][CHUNK] = False
    unfinished = slice(2 * CHUNK, 2 * CHUNK + 2)  # chunk = 2 topologies
    ds = xr.open_zarr(store)
    for name in SCHEMA:
        values = ds[name].isel(topology=unfinished).values
        assert values.dtype.kind == "f" and np.isnan(values).all(), name
    opened = open_store(store)
    assert opened.attrs["finished_topologies"] == 4 and opened.sizes["topology"] == 4
    assert list(opened.topology.values) == [0, 1, 4, 5]
    full = open_store(finished[1])
    for name, variable in SCHEMA.items():
        assert opened[name].dtype == full[name].dtype, name
        if variable.dtype != "float":
            assert opened[name].dtype.kind in "bi", name
        np.testing.assert_array_equal(
            opened[name].values, full[name].isel(topology=[0, 1, 4, 5]).values, err_msg=name
        )


def made_by_another_build(sweep_file: Path, store: Path, monkeypatch) -> None:
    """Solve ``store`` as edgesplit 0.0.1 at commit 0123abc would, and leave chunk
    CHUNK unrecorded."""
    with monkeypatch.context() as patch:
        patch.setattr(edgesplit, "__version__", "0.0.1")
        patch.setattr(identity, "git_commit", lambda: "0123abc")
        assert main(["run", str(sweep_file), "--out", str(store), "--quiet"]) == 0
    zarr.open_group(str(store), mode="r+")["chunk_done"][CHUNK] = False


def test_another_build_needs_the_flag_and_is_recorded(finished, tmp_path, capsys, monkeypatch):
    sweep_file = finished[0]
    store = tmp_path / "tiny.zarr"
    made_by_another_build(sweep_file, store, monkeypatch)
    capsys.readouterr()
    before = raw(store)
    assert main(["run", str(sweep_file), "--out", str(store), "--quiet"]) == 2
    one_error_line(capsys, "was made by edgesplit 0.0.1 (commit 0123abc)", "--allow-other-build")
    assert raw(store) == before
    command = ["run", str(sweep_file), "--out", str(store), "--quiet", "--allow-other-build"]
    assert main(command) == 0
    builds = zarr.open_group(str(store), mode="r")["chunk_build"][:]
    assert list(builds) == ["0.0.1 (commit 0123abc)", build(), "0.0.1 (commit 0123abc)"]
    assert main(["verify", str(store)]) == 0


def test_workers_of_another_count_are_refused(finished, tmp_path, capsys):
    sweep_file = finished[0]
    store = tmp_path / "shared.zarr"
    assert main(["init", str(sweep_file), "--out", str(store)]) == 0
    # A worker of 2 claims the store (its chunks 0 and 2 solved, chunk 1 left).
    assert main(["run", str(sweep_file), "--out", str(store), "--quiet", "--worker", "0/2"]) == 0
    capsys.readouterr()
    before = raw(store)
    assert main(["run", str(sweep_file), "--out", str(store), "--quiet", "--worker", "1/3"]) == 2
    one_error_line(capsys, "--worker", "2 workers, not 3")
    assert raw(store) == before
    # Mopping up without --worker stays allowed.
    assert main(["run", str(sweep_file), "--out", str(store), "--quiet"]) == 0
    assert raw(store) == raw(finished[1])


@pytest.mark.parametrize("where", ["", "{store}/inner.zarr", "{store}/association/x.zarr"])
def test_no_store_in_nowhere_or_inside_another(where, finished, capsys):
    sweep_file, store = finished
    before = raw(store)
    out = where.format(store=store)
    assert main(["run", str(sweep_file), "--out", out, "--quiet"]) == 2
    one_error_line(capsys, "--out" if not out else "is inside the Zarr store")
    assert raw(store) == before
    assert not out or not os.path.exists(out)


def test_the_model_index_grows_with_the_models():
    many = parse_sweep(TINY).replace(
        setup=parse_sweep(TINY).setup.replace(models=("alexnet", "asr", "face") * 43)
    )
    assert template(many).model.dtype == np.int16
    assert template(parse_sweep(TINY)).model.dtype == np.int8
