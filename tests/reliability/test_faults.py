"""SIGKILL at every stage of a real train_prune process: nothing finished is lost or recomputed, nothing
half-written is left, and the resumed run's numbers equal an uninterrupted run's.

Stage order with TINY_FLAGS (victim + 1 shadow, 2 epochs, 1 fine-tuning epoch): train.epoch hits 1-2 are the
victim's original training, 3-4 the shadow's, 5 the victim's fine-tuning, 6 the shadow's.
"""
import json

import pytest

from reliability_helpers import (RUN_DIR, SIGKILL_RETURNCODE, TINY_FLAGS, assert_nothing_half_written, is_lock_file,
                                 comparable, completed_artefacts, read_result, result_files, run_binary)

slow = pytest.mark.slow

# (fault spec, finished models (meta.json) when the kill lands, marker expected in the resumed run's log)
CASES = [
    # Mid-training: the resumed run continues from the epoch-1 checkpoint and still gets identical numbers,
    # which needs a shuffle order that does not depend on the process's RNG history (batch_order.epoch_stream).
    pytest.param("train.epoch:1", 0, "resuming training from the epoch-1 checkpoint", id="original-training"),
    # Between epoch 2's TF checkpoint and the state.json naming it: state.json still names epoch 1's
    # checkpoint, which used to be deleted already (max_to_keep=1) and made the run unresumable.
    pytest.param("train.checkpoint:2", 0, "resuming training from the epoch-1 checkpoint", id="checkpoint-write"),
    # model.h5 written, meta.json not: the stage counts as unfinished and is redone from its checkpoint.
    pytest.param("stage.model_saved:1", 0, None, id="model-save", marks=slow),
    pytest.param("stage.original:2", 1, None, id="shadow-original", marks=slow),
    pytest.param("stage.pruned:1", 2, None, id="pruning", marks=slow),
    pytest.param("train.epoch:5", 2, None, id="fine-tuning", marks=slow),
    pytest.param("stage.signals:3", 4, None, id="signals", marks=slow),
    pytest.param("stage.attack:1", 4, None, id="attack-training", marks=slow),
    pytest.param("stage.report:1", 4, None, id="report", marks=slow),
    # Inside the atomic write of the results JSON: its temp file is complete, the rename never happened.
    pytest.param("write/l1_unstructured-*.json:1", 4, None, id="results-write", marks=slow),
]


@pytest.mark.parametrize("fault,finished_models,resume_marker", CASES)
def test_kill_at_stage_then_resume(tmp_path, reference_run, fault, finished_models, resume_marker):
    reference_root, reference = reference_run
    root = tmp_path / "runs"

    killed = run_binary("train_prune", f"--run_root={root}", *TINY_FLAGS, fault=fault)
    assert killed.returncode == SIGKILL_RETURNCODE, killed.stderr[-3000:]
    assert result_files(root) == [], "a killed run must not leave a results JSON"
    assert_nothing_half_written(root)
    assert len(list(root.rglob("meta.json"))) == finished_models, "the kill did not land at the expected stage"
    before = completed_artefacts(root)

    resumed = run_binary("train_prune", f"--run_root={root}", *TINY_FLAGS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    if resume_marker:
        assert resume_marker in resumed.stderr
    after = completed_artefacts(root)
    changed = sorted(rel for rel, info in before.items() if after.get(rel) != info)
    assert changed == [], f"finished artefacts were recomputed or rewritten: {changed}"
    assert comparable(read_result(root)) == reference
    assert len(list(root.rglob("meta.json"))) == 4  # victim + shadow, original + pruned


def test_killed_run_leaves_only_hidden_temp_files(tmp_path):
    """A kill inside an atomic write leaves its temp file hidden, never under the artefact's own name."""
    root = tmp_path / "runs"
    killed = run_binary("train_prune", f"--run_root={root}", *TINY_FLAGS, fault="write/split.npz")
    assert killed.returncode == SIGKILL_RETURNCODE, killed.stderr[-3000:]
    files = [p for p in root.rglob("*") if p.is_file() and not is_lock_file(p)]
    assert files and all(p.name.startswith(".split.npz.") for p in files), files
    assert not (root / RUN_DIR / "split.npz").exists()


def test_stage_files_of_a_finished_run_are_complete(reference_run):
    """The invariant checker itself: it accepts a finished run and every model there has its marker."""
    root, _ = reference_run
    assert_nothing_half_written(root)
    metas = list(root.rglob("meta.json"))
    assert len(metas) == 4 and all(json.loads(p.read_text())["format_version"] >= 1 for p in metas)
    assert all((p.parent / "model.h5").exists() for p in metas)
    assert len(result_files(root)) == 1


def test_assert_nothing_half_written_catches_a_truncated_file(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "meta.json").write_text('{"format_version": 1')
    with pytest.raises(json.JSONDecodeError):
        assert_nothing_half_written(tmp_path)
    (tmp_path / "a" / "meta.json").write_text('{"format_version": 1}')
    with pytest.raises(AssertionError, match="model.h5 is missing"):
        assert_nothing_half_written(tmp_path)


def test_killed_sweep_resumes_and_matches_train_prune(tmp_path, reference_run):
    """A sweep killed while writing its 2nd configuration's report keeps the 1st, skips it on resume, trains
    the originals once, and its numbers for the shared configuration equal train_prune's."""
    _, reference = reference_run
    root = tmp_path / "runs"
    flags = [f"--run_root={root}", *TINY_FLAGS, "--sparsities=0.7,0.5"]

    killed = run_binary("sweep", *flags, fault="stage.report:2")
    assert killed.returncode == SIGKILL_RETURNCODE, killed.stderr[-3000:]
    (first,) = result_files(root)
    assert first.name.startswith("l1_unstructured-0.7-")
    assert_nothing_half_written(root)
    before = completed_artefacts(root)

    resumed = run_binary("sweep", *flags)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = completed_artefacts(root)
    assert sorted(rel for rel, info in before.items() if after.get(rel) != info) == []
    assert len(list((root / RUN_DIR).glob("original-*"))) == 1
    rows = [line.split() for line in resumed.stdout.splitlines() if line.startswith("l1_unstructured")]
    assert [(row[1], row[-1]) for row in rows] == [("0.7", "reused"), ("0.5", "computed")]
    assert comparable(json.loads(first.read_text())) == reference
    assert len(result_files(root)) == 2
