"""Atomic writes under failure, and the fault-point switch itself (in-process, no TensorFlow work)."""
import errno
import os

import pytest

from tfprune_mia import faults
from tfprune_mia.errors import ConfigError, StorageError
from tfprune_mia.io import atomic_path, write_json


@pytest.fixture
def fault(monkeypatch):
    def set_fault(spec):
        monkeypatch.setenv(faults.ENV, spec)
        faults.reset()
    yield set_fault
    faults.reset()


def test_disk_full_keeps_the_previous_file_and_leaves_no_temp_file(tmp_path, fault):
    path = tmp_path / "result.json"
    write_json(path, {"old": 1})
    fault("write/result.json:1:enospc")
    with pytest.raises(StorageError, match=r"could not write .*result.json \(No space left on device\); free disk"):
        write_json(path, {"new": 2})
    assert path.read_text().strip() == '{\n  "old": 1\n}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_disk_full_message_from_h5py_is_recognised(tmp_path):
    with pytest.raises(StorageError, match="free disk space"):
        with atomic_path(tmp_path / "model.h5"):
            raise OSError("Unable to synchronously write data (file write failed: errno = 28, error message = "
                          "'No space left on device')")
    assert list(tmp_path.iterdir()) == []


def test_other_os_errors_stay_bugs(tmp_path):
    with pytest.raises(OSError) as info:
        with atomic_path(tmp_path / "x.json"):
            raise OSError(errno.EIO, "I/O error")
    assert not isinstance(info.value, StorageError)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(StorageError, match="fix the directory's permissions"):
            write_json(tmp_path / "x.json", {})
    finally:
        tmp_path.chmod(0o700)


def test_fault_fires_only_on_the_counted_matching_hit(fault):
    fault("stage.sig*:2:trigger")
    assert [faults.point(name) for name in ("stage.signals", "stage.attack", "stage.signals", "stage.signals")] == [
        False, False, True, False]


def test_no_fault_configured_is_a_no_op(monkeypatch):
    monkeypatch.delenv(faults.ENV, raising=False)
    assert faults.point("stage.report") is False


@pytest.mark.parametrize("spec", ["stage.report:0", "stage.report:x", "stage.report:1:explode", ":1", "a:1:kill:b"])
def test_malformed_fault_spec_is_a_clear_error(fault, spec):
    fault(spec)
    with pytest.raises(ConfigError, match="TFPRUNE_MIA_FAULT=.* is not <point>"):
        faults.point("stage.report")
