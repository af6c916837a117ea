"""SIGKILL inside the stacked training of the attacker's models (--stacked_training=auto): the resumed run
continues the stack from its checkpoint, keeps the finished victim, and ends with the numbers of an
uninterrupted run."""
import pytest

from reliability_helpers import (SIGKILL_RETURNCODE, TINY_FLAGS, assert_nothing_half_written, comparable,
                                 completed_artefacts, read_result, result_files, run_binary)

STACKED_FLAGS = [*TINY_FLAGS, "--num_shadows=2", "--stacked_training=auto"]


@pytest.mark.slow
def test_kill_in_stacked_training_then_resume(tmp_path):
    reference_root = tmp_path / "reference"
    uninterrupted = run_binary("train_prune", f"--run_root={reference_root}", *STACKED_FLAGS)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    root = tmp_path / "runs"
    # train.epoch hits 1-2: the victim's own (one-by-one) training; 3: the stack's first checkpoint.
    killed = run_binary("train_prune", f"--run_root={root}", *STACKED_FLAGS, fault="train.epoch:3")
    assert killed.returncode == SIGKILL_RETURNCODE, killed.stderr[-3000:]
    assert result_files(root) == []
    assert_nothing_half_written(root)
    assert len(list(root.rglob("meta.json"))) == 1  # the victim's original only
    before = completed_artefacts(root)

    resumed = run_binary("train_prune", f"--run_root={root}", *STACKED_FLAGS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming batched training from the epoch-1 checkpoint" in resumed.stderr
    after = completed_artefacts(root)
    assert sorted(rel for rel, info in before.items() if after.get(rel) != info) == []
    assert comparable(read_result(root)) == comparable(read_result(reference_root))
    metas = list(root.rglob("meta.json"))
    assert len(metas) == 6  # victim + 2 shadows, original + pruned
    assert sum('"stacked_training"' in path.read_text() for path in metas) == 2
