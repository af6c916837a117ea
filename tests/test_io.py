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
