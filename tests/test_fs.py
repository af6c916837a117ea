"""The file-system layer on TensorFlow's in-memory `ram://` file system: paths keep their scheme, atomic writes
upload whole files, readers that need a local file get a copy, and local-only calls on a remote path fail."""
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from tfprune_mia import fs
from tfprune_mia.errors import CheckpointError
from tfprune_mia.io import atomic_path, read_json, read_npz, write_json, write_npz
from tfprune_mia.locking import Lease, LockTimeout, directory_lock, is_locked


@pytest.fixture
def root():
    """A fresh ram:// directory per test (the ram file system lives as long as the process)."""
    path = fs.path(f"ram://fs-test-{uuid.uuid4().hex[:8]}")
    yield path
    fs.rmtree(path)


def test_path_dispatch_keeps_the_scheme_and_pathlib_operations():
    assert fs.path("runs/x") == Path("runs/x") and fs.path("file:///tmp/x") == Path("/tmp/x")
    remote = fs.path("gs://bucket/runs") / "digits-seed7" / "results" / "a.json"
    assert isinstance(remote, fs.GPath) and str(remote) == "gs://bucket/runs/digits-seed7/results/a.json"
    assert remote.name == "a.json" and remote.stem == "a" and remote.suffix == ".json"
    assert str(remote.with_suffix(".scores.npz")) == "gs://bucket/runs/digits-seed7/results/a.scores.npz"
    assert str(remote.parent.parent) == "gs://bucket/runs/digits-seed7"
    assert str(remote.relative_to("gs://bucket/runs")) == "digits-seed7/results/a.json"
    with pytest.raises(TypeError):  # no __fspath__: a local-only call never writes a local "gs:" directory
        open(remote)


def test_files_round_trip_through_gfile(root):
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "x.txt").write_text("hello")
    assert (root / "a" / "b" / "x.txt").read_text() == "hello" and (root / "a").is_dir()
    write_json(root / "meta.json", {"k": [1, 2]})
    write_npz(root / "arrays.npz", x=np.arange(5))
    assert read_json(root / "meta.json") == {"k": [1, 2]}
    np.testing.assert_array_equal(read_npz(root / "arrays.npz")["x"], np.arange(5))
    assert [p.name for p in root.glob("*.json")] == ["meta.json"]
    assert [str(p.relative_to(root)) for p in root.rglob("b/*.txt")] == ["a/b/x.txt"]
    with pytest.raises(CheckpointError, match="missing"):
        read_json(root / "absent.json")
    (root / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="corrupt"):
        read_npz(root / "broken.npz")


def test_atomic_path_uploads_only_a_finished_file(root):
    target = root / "model.h5"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert isinstance(tmp, Path)  # a real local file, for writers such as h5py
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed mid-write")
    assert not target.exists() and fs.glob(f"{root}/*") == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and [p.name for p in root.iterdir()] == ["model.h5"]
    with fs.local_copy(target) as local:
        assert local.read_bytes() == b"whole"
    assert not local.exists()


@pytest.mark.parametrize("where", ["ram", "local"])
def test_rename_without_overwrite_refuses_an_existing_target(root, tmp_path, where):
    root = root if where == "ram" else tmp_path
    root.mkdir(parents=True, exist_ok=True)
    (root / "a").write_text("a")
    (root / "b").write_text("b")
    with pytest.raises(FileExistsError):
        fs.rename(root / "a", root / "b")
    fs.rename(root / "a", root / "b", overwrite=True)
    assert (root / "b").read_text() == "a" and not (root / "a").exists()


def test_scheme_problem_names_unknown_file_systems():
    assert fs.scheme_problem("ram://runs") == "" and fs.scheme_problem("runs/local") == ""
    assert "no file system for nosuch://" in fs.scheme_problem("nosuch://bucket/runs")
    assert "names no location" in fs.scheme_problem("gs://")


@pytest.fixture
def fast_lease(monkeypatch):
    monkeypatch.setattr(Lease, "settle", 0.05)
    monkeypatch.setattr(Lease, "renew_every", 0.1)
    monkeypatch.setattr(Lease, "stale_after", 0.6)
    monkeypatch.setattr(Lease, "poll", 0.02)


def test_lease_excludes_a_second_holder_until_released(root, fast_lease):
    inside, overlaps = [], []

    def work(name):
        with directory_lock(root, notice=lambda message: None):
            if inside:
                overlaps.append(name)
            inside.append(name)
            time.sleep(0.3)  # longer than renew_every: the heartbeat keeps the lease alive meanwhile
            inside.remove(name)

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not overlaps
    assert not is_locked(root) and [p.name for p in root.iterdir()] == []  # released, no claim files left


def test_lease_waiter_is_told_once_and_times_out(root, fast_lease):
    notices = []
    with directory_lock(root):
        assert is_locked(root)
        with pytest.raises(LockTimeout, match="in use by another run .*another --run_root"):
            with directory_lock(root, timeout=0.3, notice=notices.append):
                pytest.fail("acquired a held lease")
    assert len(notices) == 1 and "waiting" in notices[0]


def test_a_dead_holders_lease_is_broken_after_it_stops_changing(root, fast_lease):
    dead = Lease(root / ".lock")
    assert dead.try_claim()  # claimed, then its process "died": no heartbeat, never released
    notices = []
    started = time.monotonic()
    with directory_lock(root, notice=notices.append):
        waited = time.monotonic() - started
    assert waited >= Lease.stale_after
    assert any("was broken" in message for message in notices)


def test_rmtree_removes_everything_below(root):
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "x").write_text("x")
    (root / "y").write_text("y")
    fs.rmtree(root)
    assert fs.glob(f"{root}/*") == [] and fs.glob(f"{root}/a/b/*") == []


def test_rewriting_a_file_replaces_its_content(root):
    root.mkdir(parents=True)
    (root / "f").write_text("long content")
    (root / "f").write_text("short")  # ram:// itself would append here
    assert (root / "f").read_text() == "short"
