"""A store cannot lie, part 2 (issue 33): it resumes only under the sweep that made it,
whatever changed (and whatever merely moved); its metadata and coordinates are covered
by checksums; and the store alone rebuilds the sweep it was made from."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from test_bad_input import fingerprint
from test_integrity import raw
from test_sweep import TINY

import edgesplit
from conftest import one_line
from edgesplit.cli import main
from edgesplit.errors import InputError
from edgesplit.io.sweep_file import parse_sweep, read_sweep
from edgesplit.model.schemes import Scheme
from edgesplit.sweep.identity import check_identity, stored_sweep
from edgesplit.sweep.runner import run_sweep
from edgesplit.sweep.spec import Sweep
from edgesplit.sweep.store import finished, open_store, open_unverified

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """TINY's sweep file, its finished store, and a copy stopped after 2 of its 3 chunks
    (the third chunk's data written, not recorded: as a kill leaves it)."""
    root = tmp_path_factory.mktemp("identity")
    (root / "tiny.toml").write_text(TINY)
    run_sweep(parse_sweep(TINY), root / "finished.zarr", progress=False)
    shutil.copytree(root / "finished.zarr", root / "stopped.zarr")
    zarr.open_group(str(root / "stopped.zarr"), mode="r+")["chunk_done"][2] = False
    return root / "tiny.toml", root / "finished.zarr", root / "stopped.zarr"


# Each field of Sweep a resumed run may be given changed, and the key the refusal names.
CHANGES = {
    "schemes": ((Scheme.PROPOSED,), "schemes"),
    "topologies": (8, "topologies"),
    "seed": (43, "seed"),
    "chunk": (3, "chunk"),
    "precision": ("float32", "precision"),
    "setup": (lambda s: s.setup.replace(crbs=7), "setup.crbs"),
    "game": (lambda s: s.game.replace(update="sequential"), "game.update"),
    "axes": ({"mean_arrival_rate": (4.0, 14.0)}, "axes.mean_arrival_rate"),
    "game_axes": ({"leader": ("local", "best_response")}, "axes"),
}
UNCHANGED_RESULTS = {"name": "renamed", "description": "another", "text": "# edited\n" + TINY}


def test_a_changed_sweep_never_resumes_into_the_store(stores):
    """Finding 1: every field of Sweep changed in turn. What the results depend on is
    refused, in one line naming it, the store byte for byte as it was; what they do not
    depend on (the name, the description, the file's text) resumes it, to the store an
    uninterrupted run makes."""
    sweep_file, reference, stopped = stores
    sweep = read_sweep(sweep_file)
    fields = {f.name for f in dataclasses.fields(Sweep)}
    assert fields == set(CHANGES) | set(UNCHANGED_RESULTS)
    store = stopped.parent / "resumed.zarr"
    shutil.copytree(stopped, store)
    before = fingerprint(store)
    for field, (value, key) in CHANGES.items():
        changed = sweep.replace(**{field: value(sweep) if callable(value) else value})
        with pytest.raises(InputError) as err:
            edgesplit.run(changed, store)
        assert f"was made with {key} = " in str(err.value), (field, str(err.value))
        assert str(err.value).endswith("refusing to mix results") and "\n" not in str(err.value)
        assert fingerprint(store) == before, field
    # A number written another way is the same number: 4 and 4.0 are one value.
    as_integers = sweep.replace(axes={"mean_arrival_rate": (4, 13)})
    check_identity("store", zarr.open_group(str(store), mode="r").attrs.asdict(), as_integers)

    edgesplit.run(sweep.replace(**UNCHANGED_RESULTS), store)
    assert raw(store) == raw(reference)


def test_the_store_rebuilds_its_sweep(stores):
    """The resolved sweep, every field, from the store's attributes alone."""
    sweep_file, reference, _ = stores
    attrs = zarr.open_group(str(reference), mode="r").attrs.asdict()
    assert stored_sweep(attrs) == read_sweep(sweep_file)
    assert stored_sweep(open_store(reference).attrs) == read_sweep(sweep_file)


def test_profiles_are_known_by_their_contents(tmp_path, capsys):
    """Finding 6: a folder of sweep, profile and store moved elsewhere (nothing edited)
    is the same store; a layer renamed changes no result; a number edited is refused,
    naming the profile as the sweep file gives it. Finding 8: ``models`` names each
    model by its index; the store rebuilds the sweep with the profile's contents once
    the files are gone."""
    folder = tmp_path / "project"
    (folder / "profiles").mkdir(parents=True)
    profile = folder / "profiles" / "my net.csv"
    profile.write_text((ROOT / "src/edgesplit/data/imc.csv").read_text())
    models = '[setup]\nmodels = ["profiles/my net.csv", "asr"]\n'
    (folder / "mine.toml").write_text(TINY.replace("[setup]\n", models))
    made_from = read_sweep(folder / "mine.toml")
    assert main(["init", str(folder / "mine.toml"), "--out", str(folder / "mine.zarr")]) == 0
    capsys.readouterr()

    moved = shutil.move(folder, tmp_path / "elsewhere")
    sweep_file, store, profile = (
        moved / "mine.toml",
        moved / "mine.zarr",
        Path(moved) / ("profiles/my net.csv"),
    )
    before = fingerprint(store)
    assert main(["init", str(sweep_file), "--out", str(store)]) == 0
    one_line(capsys, f"{store}: 0 of 3 chunks done")
    profile.write_text(profile.read_text().replace("conv1", "first_convolution", 1))
    assert main(["init", str(sweep_file), "--out", str(store)]) == 0
    capsys.readouterr()
    profile.write_text(profile.read_text().replace("210830400", "210830401", 1))
    for command in ("init", "run"):
        assert main([command, str(sweep_file), "--out", str(store)]) == 2
        one_line(capsys, "edgesplit: error: ", "profiles/my net.csv", "contents changed")
    assert fingerprint(store) == before

    profile.unlink()
    sweep_file.unlink()
    attrs = zarr.open_group(str(store), mode="r").attrs.asdict()
    assert attrs["models"] == ["profiles/my net.csv", "asr"]
    assert stored_sweep(attrs) == made_from


def flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def edit_metadata(store: Path, key: str, change, *, everywhere: bool = True) -> None:
    """Apply ``change`` to metadata entry ``key`` in .zmetadata (which readers read) and,
    when ``everywhere``, in its own file too."""
    consolidated = json.loads((store / ".zmetadata").read_text())
    change(consolidated["metadata"][key])
    (store / ".zmetadata").write_text(json.dumps(consolidated))
    if everywhere:
        own = json.loads((store / key).read_text())
        change(own)
        (store / key).write_text(json.dumps(own))


def set_key(name, value):
    return lambda entry: entry.__setitem__(name, value)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# Findings 2, 3 and 6: each damage, and what verify says of it.
METADATA_DAMAGES = {
    "topology coordinate removed": (
        lambda s: (s / "topology/0").unlink(),
        "coordinate topology does not match",
    ),
    "arrival-rate coordinate bit flip": (
        lambda s: flip_a_bit(s / "mean_arrival_rate/0"),
        "coordinate mean_arrival_rate",
    ),
    "scheme coordinate bit flip": (lambda s: flip_a_bit(s / "scheme/0"), "coordinate scheme"),
    "fill value in .zmetadata": (
        lambda s: edit_metadata(
            s, "device_utility/.zarray", set_key("fill_value", 0.0), everywhere=False
        ),
        "device_utility/.zarray is not what .zmetadata records",
    ),
    "fill value everywhere": (
        lambda s: edit_metadata(s, "device_utility/.zarray", set_key("fill_value", 0.0)),
        "device_utility/.zarray does not match its checksum",
    ),
    "shape edited": (
        lambda s: edit_metadata(s, "delay/.zarray", set_key("shape", [3, 2, 5, 5])),
        "delay/.zarray does not match its checksum",
    ),
    "attribute edited": (
        lambda s: edit_metadata(s, ".zattrs", set_key("min_gain", 0.5)),
        ".zattrs does not match its checksum",
    ),
    "truncated .zmetadata": (lambda s: truncate(s / ".zmetadata"), ".zmetadata cannot be read"),
    "array folder removed": (lambda s: shutil.rmtree(s / "delay"), "delay/.zattrs is missing"),
}


@pytest.mark.parametrize("damage", METADATA_DAMAGES)
def test_damaged_metadata_is_found_never_read_and_re_made(damage, stores, tmp_path, capsys):
    """Findings 2, 3 and 6: verify finds the damage (exit 1) and says how to recover;
    summarize, run and open_store refuse the store in one line, saying it is damaged
    (never "choose another --out"), changing nothing. verify --repair re-makes the store
    from its own record of the sweep, keeping every chunk that verifies (the store an
    uninterrupted run makes, once rerun), or, its attributes damaged too, says that the
    sweep is not known."""
    sweep_file, reference, _ = stores
    store = tmp_path / "tiny.zarr"
    shutil.copytree(reference, store)
    harm, finding = METADATA_DAMAGES[damage]
    harm(store)
    damaged = fingerprint(store)
    assert main(["verify", str(store)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"metadata: {finding}") and out.count("\n") == 1, out
    assert (
        err == f"{store}: its metadata is damaged; `edgesplit verify --repair` re-makes it "
        "from the store's record of its sweep, keeping every chunk that verifies\n"
    ), err
    for command in (["summarize", str(store)], ["run", str(sweep_file), "--out", str(store)]):
        assert main(command) == 2
        err = one_line(capsys, f"edgesplit: error: {store}: its metadata is damaged: ")
        assert finding in err and "choose another --out" not in err
    with pytest.raises(InputError, match="its metadata is damaged"):
        open_store(store)
    assert fingerprint(store) == damaged  # nothing refused changed anything

    if damage == "attribute edited":
        assert main(["verify", str(store), "--repair"]) == 2
        out, err = capsys.readouterr()
        assert out == f"metadata: {finding}\n" and err.count("\n") == 1, (out, err)
        assert err.startswith(f"edgesplit: error: {store}: its attributes are damaged too")
        assert fingerprint(store) == damaged
        return
    assert main(["verify", str(store), "--repair"]) == 1
    out, err = capsys.readouterr()
    kept = 0 if damage == "array folder removed" else 3  # every chunk lost its delay
    assert err.startswith(f"{store}: its metadata re-made from its record of the sweep, {kept} ")
    assert fingerprint(store.with_name("tiny.zarr.damaged")) == damaged
    assert main(["verify", str(store)]) == 0
    assert main(["run", str(sweep_file), "--out", str(store), "--quiet"]) == 0
    assert raw(store) == raw(reference)


def test_finished_topologies_are_known_by_their_place(stores):
    """Which topologies are finished comes from the chunk records by index, never from
    the topology coordinate's values."""
    _, _, stopped = stores
    ds = open_unverified(stopped)
    relabelled = ds.assign_coords(topology=np.arange(ds.sizes["topology"])[::-1] * 7)
    kept = finished(relabelled)
    assert list(kept.topology.values) == [35, 28, 21, 14]  # the first two chunks' places
    xr.testing.assert_identical(kept.drop_vars("topology"), finished(ds).drop_vars("topology"))
