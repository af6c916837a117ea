import os
import signal
import subprocess
import sys
import time

import pytest

from tfprune_mia.locking import LockTimeout, directory_lock, is_locked

HOLD = """
import sys, time
from tfprune_mia.locking import directory_lock
with directory_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_in_another_process(directory, seconds):
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(directory), str(seconds)], stdout=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert process.stdout.readline().strip() == "held"
    return process


def test_lock_is_held_inside_the_block_and_released_after(tmp_path):
    run = tmp_path / "run"
    with directory_lock(run) as path:
        assert path.parent == run and is_locked(run)
    assert not is_locked(run)
    with directory_lock(run):  # re-acquirable once released
        pass


def test_second_process_is_told_and_gives_up_after_its_timeout(tmp_path):
    holder = hold_in_another_process(tmp_path, 60)
    notices = []
    try:
        with pytest.raises(LockTimeout, match=f"in use by another run \\(pid {holder.pid} .*another --run_root"):
            with directory_lock(tmp_path, timeout=0.6, notice=notices.append):
                pytest.fail("acquired a lock another process holds")
    finally:
        holder.kill()
        holder.wait()
    assert len(notices) == 1 and "waiting" in notices[0] and str(holder.pid) in notices[0]


def test_waiter_proceeds_once_the_holder_finishes(tmp_path):
    holder = hold_in_another_process(tmp_path, 1.5)
    start = time.monotonic()
    notices = []
    with directory_lock(tmp_path, timeout=60, notice=notices.append):
        assert time.monotonic() - start > 1.0  # only after the holder let go
    holder.wait()
    assert len(notices) == 1


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = hold_in_another_process(tmp_path, 600)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    start = time.monotonic()
    with directory_lock(tmp_path, timeout=5, notice=pytest.fail):
        pass
    assert time.monotonic() - start < 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory_is_a_storage_error(tmp_path):
    from tfprune_mia.errors import StorageError

    tmp_path.chmod(0o500)
    try:
        with pytest.raises(StorageError, match="lock file"):
            with directory_lock(tmp_path / "run"):
                pass
    finally:
        tmp_path.chmod(0o700)
