"""The fault-injecting file layers themselves: a layer that forgot too little would make
every power-cut test pass for nothing."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from lakeloop.store._faults import DurabilityViolation, FaultLayer, PowerCutLayer


def durable_file(layer: PowerCutLayer, path: Path, data: bytes) -> None:
    f = layer.create(str(path))
    f.write(data)
    f.sync()
    f.close()
    layer.sync_dir(str(path.parent))


def test_unsynced_bytes_are_lost(tmp_path: Path) -> None:
    layer = PowerCutLayer()
    f = layer.create(str(tmp_path / "a"))
    layer.sync_dir(str(tmp_path))
    f.write(b"durable")
    f.sync()
    f.write(b" lost")
    assert (tmp_path / "a").read_bytes() == b"durable lost"
    report = layer.power_cut()
    f.close()
    assert (tmp_path / "a").read_bytes() == b"durable"
    assert report.truncated == {str(tmp_path / "a"): (12, 7)}
    with pytest.raises(OSError) as err:
        layer.create(str(tmp_path / "b"))
    assert err.value.errno == errno.EIO


def test_names_need_a_folder_sync(tmp_path: Path) -> None:
    layer = PowerCutLayer()
    durable_file(layer, tmp_path / "kept", b"k")
    durable_file(layer, tmp_path / "gone", b"g")
    durable_file(layer, tmp_path / "moved", b"m")
    f = layer.create(str(tmp_path / "new"))  # synced content, but no folder sync
    f.write(b"n")
    f.sync()
    f.close()
    layer.unlink(str(tmp_path / "gone"))  # not made durable: comes back
    layer.rename(str(tmp_path / "moved"), str(tmp_path / "kept"))  # ditto, over "kept"
    assert sorted(os.listdir(tmp_path)) == ["kept", "new"]
    layer.power_cut()
    assert sorted(os.listdir(tmp_path)) == ["gone", "kept", "moved"]
    assert (tmp_path / "gone").read_bytes() == b"g"
    assert (tmp_path / "kept").read_bytes() == b"k"
    assert (tmp_path / "moved").read_bytes() == b"m"


def test_durable_name_changes_stay(tmp_path: Path) -> None:
    layer = PowerCutLayer()
    durable_file(layer, tmp_path / "gone", b"g")
    durable_file(layer, tmp_path / "moved", b"m")
    layer.unlink(str(tmp_path / "gone"))
    layer.rename(str(tmp_path / "moved"), str(tmp_path / "there"))
    layer.sync_dir(str(tmp_path))
    layer.power_cut()
    assert sorted(os.listdir(tmp_path)) == ["there"]


def test_create_then_unlink_then_create_again(tmp_path: Path) -> None:
    layer = PowerCutLayer()
    path = tmp_path / "x"
    f = layer.create(str(path))
    f.write(b"first")
    f.sync()
    f.close()
    layer.unlink(str(path))
    f = layer.create(str(path))
    f.write(b"second")
    f.close()
    layer.power_cut()  # none of the three changes of names was durable
    assert not path.exists()


def test_truncate_is_undone_until_synced(tmp_path: Path) -> None:
    layer = PowerCutLayer()
    path = tmp_path / "v"
    durable_file(layer, path, b"0123456789")
    f = layer.open_append(str(path))
    f.truncate(4)  # rolling back an append: legal (it is the tail)
    f.write(b"ab")
    assert path.read_bytes() == b"0123ab"
    layer.power_cut()
    f.close()
    assert path.read_bytes() == b"0123456789"

    layer = PowerCutLayer()
    f = layer.open_append(str(path))
    f.truncate(4)
    f.write(b"ab")
    f.sync()
    layer.power_cut()
    f.close()
    assert path.read_bytes() == b"0123ab"


@pytest.mark.parametrize(
    ("mode", "left"), [("lose", b"ok"), ("torn", b"ok1234"), ("keep", b"ok12345678")]
)
def test_what_becomes_of_unsynced_bytes(tmp_path: Path, mode: str, left: bytes) -> None:
    layer = PowerCutLayer(unsynced=mode)
    f = layer.create(str(tmp_path / "a"))
    f.write(b"ok")
    f.sync()
    layer.sync_dir(str(tmp_path))
    f.write(b"12345678")
    f2 = layer.create(str(tmp_path / "b"))  # name never synced
    layer.power_cut()
    f.close()
    f2.close()
    assert (tmp_path / "a").read_bytes() == left
    assert (tmp_path / "b").exists() == (mode == "keep")


@pytest.mark.parametrize("after", [False, True])
def test_cut_at_an_operation(tmp_path: Path, after: bool) -> None:
    layer = PowerCutLayer(cut_at=4, cut_after=after)
    f = layer.create(str(tmp_path / "b"))  # 1
    layer.sync_dir(str(tmp_path))  # 2
    f.write(b"data")  # 3
    with pytest.raises(OSError) as err:
        f.sync()  # 4: the cut
    assert err.value.errno == errno.EIO and layer.is_off
    f.close()
    # cut at the sync: the data is lost; cut after it: the sync made it durable
    assert (tmp_path / "b").read_bytes() == (b"data" if after else b"")
    with pytest.raises(OSError):
        layer.unlink(str(tmp_path / "b"))
    assert [name for _n, name, _p, _ph in layer.log] == ["create", "sync_dir", "write", "sync"]


def test_overwriting_durable_bytes_is_caught(tmp_path: Path) -> None:
    layer = PowerCutLayer()
    path = tmp_path / "v"
    durable_file(layer, path, b"0123456789")
    f = layer.open_append(str(path))
    os.truncate(path, 4)  # behind the layer's back
    with pytest.raises(DurabilityViolation):
        f.write(b"xx")
    f.close()
    assert layer.violations

    layer = PowerCutLayer()
    durable_file(layer, tmp_path / "w", b"0123456789")
    with open(tmp_path / "w", "r+b") as raw:  # an in-place overwrite
        raw.write(b"X")
    layer.power_cut()
    assert any("changed" in v for v in layer.violations)


def test_fault_layer_fills_the_disk(tmp_path: Path) -> None:
    layer = FaultLayer(fail_after_bytes=10, match=lambda p: p.endswith(".vol"))
    other = layer.create(str(tmp_path / "x.blob"))
    other.write(b"not counted: " * 10)
    f = layer.create(str(tmp_path / "a.vol"))
    f.write(b"12345678")
    with pytest.raises(OSError) as err:
        f.write(b"abcdef")  # writes what fits, then fails
    assert err.value.errno == errno.ENOSPC
    assert (tmp_path / "a.vol").read_bytes() == b"12345678ab"
    with pytest.raises(OSError):
        f.write(b"z")  # full stays full
    layer.heal()
    f.write(b"z")
    f.close()
    other.close()
    assert (tmp_path / "a.vol").read_bytes() == b"12345678abz"
    assert layer.failures == 2


def test_fault_layer_kth_write_and_other_operations(tmp_path: Path) -> None:
    layer = FaultLayer(fail_on_write=2, error=errno.EIO)
    f = layer.create(str(tmp_path / "a"))
    f.write(b"one")
    with pytest.raises(OSError) as err:
        f.write(b"two")
    assert err.value.errno == errno.EIO
    f.close()
    assert (tmp_path / "a").read_bytes() == b"one"

    layer = FaultLayer(fail_ops={"unlink", "sync"})
    f = layer.create(str(tmp_path / "b"))
    f.write(b"fine")
    with pytest.raises(OSError):
        f.sync()
    f.close()
    with pytest.raises(OSError):
        layer.unlink(str(tmp_path / "b"))
    assert (tmp_path / "b").exists() and not layer.tripped
    with pytest.raises(ValueError):
        FaultLayer(fail_ops={"explode"})
