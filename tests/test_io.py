import os

import numpy as np
import pytest

from tfprune_mia.errors import CheckpointError
from tfprune_mia.io import atomic_path, read_json, read_npz, stable_hash, write_json, write_npz


def test_atomic_path_keeps_the_old_file_when_the_block_fails(tmp_path):
    target = tmp_path / "result.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert read_json(target) == {"a": 1}
    assert os.listdir(tmp_path) == ["result.json"]


def test_npz_round_trip_and_pickle_refused(tmp_path):
    write_npz(tmp_path / "a.npz", x=np.arange(3))
    assert read_npz(tmp_path / "a.npz")["x"].tolist() == [0, 1, 2]
    np.savez(tmp_path / "evil.npz", x=np.array([{"code": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="corrupt"):
        read_npz(tmp_path / "evil.npz")


def test_corrupt_and_missing_json_are_checkpoint_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        read_json(tmp_path / "bad.json")
    with pytest.raises(CheckpointError, match="missing"):
        read_json(tmp_path / "absent.json")


def test_stable_hash_ignores_key_order_but_not_values():
    assert stable_hash({"a": 1, "b": 2}) == stable_hash({"b": 2, "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_respect_the_umask(tmp_path, umask):
    """Results, models and figures get the same mode as any file the process creates (checkpoints included),
    not mkstemp's private 0600."""
    old = os.umask(umask)
    try:
        write_json(tmp_path / "result.json", {"a": 1})
        write_npz(tmp_path / "scores.npz", x=np.arange(3))
        with atomic_path(tmp_path / "figure.png") as tmp:
            tmp.write_bytes(b"png")
        (tmp_path / "plain.txt").write_text("checkpoint")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert (tmp_path / "plain.txt").stat().st_mode & 0o777 == expected
    for name in ("result.json", "scores.npz", "figure.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name


def test_current_umask_reads_without_changing_it():
    from tfprune_mia.io import current_umask

    old = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        assert current_umask() == 0o027
    finally:
        os.umask(old)
