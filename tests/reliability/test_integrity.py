"""Privacy-evaluation integrity: member, non-member and shadow sets are disjoint and the victim's evaluation
set is balanced, checked whenever a split is used (experiment.check_balanced_disjoint)."""
import dataclasses

import numpy as np
import pytest

from tfprune_mia.data.splits import Part, load_split, make_split, save_split
from tfprune_mia.errors import CheckpointError
from tfprune_mia.pipeline.config import ExperimentConfig
from tfprune_mia.pipeline.stages import Stages, check_balanced_disjoint


@pytest.fixture
def split():
    return make_split(1797, seed=7, num_shadows=2)


def test_a_fresh_split_passes(split):
    check_balanced_disjoint(split)
    members, non_members = split.victim.train, split.victim.test
    assert abs(len(members) - len(non_members)) <= 0.05 * len(members)
    everything = [split.victim.train, split.victim.dev, split.victim.test]
    assert len(np.unique(np.concatenate(everything))) == sum(map(len, everything))


def replace_victim(split, **fields):
    return dataclasses.replace(split, victim=dataclasses.replace(split.victim, **fields))


def test_member_also_non_member_is_refused(split):
    test = split.victim.test.copy()
    test[0] = split.victim.train[0]
    with pytest.raises(CheckpointError, match="overlapping"):
        check_balanced_disjoint(replace_victim(split, test=test))


def test_shadow_trained_on_victim_members_is_refused(split):
    shadow = split.shadows[1]
    train = shadow.train.copy()
    train[0] = split.victim.train[0]
    shadows = [split.shadows[0], Part(train, shadow.dev, shadow.test)]
    with pytest.raises(CheckpointError, match="shadow_1 shares records with the victim"):
        check_balanced_disjoint(dataclasses.replace(split, shadows=shadows))


def test_unbalanced_evaluation_set_is_refused(split):
    with pytest.raises(CheckpointError, match="unbalanced"):
        check_balanced_disjoint(replace_victim(split, test=split.victim.test[: len(split.victim.test) // 2]))


def test_split_is_checked_as_soon_as_an_experiment_reads_it(tmp_path, split):
    """Before any model is trained: the Experiment's split property refuses a tampered split file."""
    config = ExperimentConfig(dataset="digits", num_shadows=2, run_root=str(tmp_path))
    path = config.base_dir / "split.npz"
    save_split(replace_victim(split, test=split.victim.test[:50]), path)
    with pytest.raises(CheckpointError, match="unbalanced"):
        Stages(config).split
    assert sorted(p.name for p in config.base_dir.iterdir()) == ["split.npz"]


def test_out_of_range_index_in_a_split_file_is_refused(tmp_path, split):
    train = split.victim.train.copy()
    train[3] = 1797
    save_split(replace_victim(split, train=train), tmp_path / "split.npz")
    with pytest.raises(CheckpointError, match=r"victim.train .*\[0, 1797\)"):
        load_split(tmp_path / "split.npz")
