"""Victim/shadow splits (Yuan & Zhang 2022): sizes, disjointness, persistence and reuse."""

import numpy as np
import pytest

from tfprune_mia.data import splits
from tfprune_mia.errors import CheckpointError, ConfigError
from tfprune_mia.io import write_npz


def sizes(part):
    return len(part.train), len(part.dev), len(part.test)


# Sizes of the authors' split: N -> (victim train/dev/test, each shadow's train/dev/test).
@pytest.mark.parametrize("n, victim, shadow", [
    (5_010, (1_126, 251, 1_128), (1_126, 251, 1_128)),        # Location
    (5_000, (1_125, 250, 1_125), (1_125, 250, 1_125)),        # CHMNIST
    (60_000, (13_500, 3_000, 13_500), (13_500, 3_000, 13_500)),  # CIFAR-10/100
    (99_289, (22_340, 4_964, 22_340), (22_340, 4_964, 22_341)),  # SVHN: the shadow half is one larger
])
def test_sizes_match_the_spec_table(n, victim, shadow):
    split = splits.make_split(n, seed=7, num_shadows=2)
    assert sizes(split.victim) == victim
    assert all(sizes(s) == shadow for s in split.shadows)


@pytest.fixture(scope="module")
def location_split():
    return splits.make_split(5_010, seed=7, num_shadows=5)


def test_victim_and_shadow_halves_are_disjoint(location_split):
    victim = np.concatenate([location_split.victim.train, location_split.victim.dev, location_split.victim.test])
    assert len(np.unique(victim)) == len(victim)
    for shadow in location_split.shadows:
        pool = np.concatenate([shadow.train, shadow.dev, shadow.test])
        assert np.intersect1d(victim, pool).size == 0
        assert len(np.union1d(victim, pool)) == 5_010  # together the halves cover every record


def test_train_dev_test_are_disjoint_within_each_model(location_split):
    for part in [location_split.victim] + location_split.shadows:
        assert np.intersect1d(part.train, part.dev).size == 0
        assert np.intersect1d(part.train, part.test).size == 0
        assert np.intersect1d(part.dev, part.test).size == 0


def test_shadows_are_different_resamplings_of_one_half(location_split):
    halves = {frozenset(np.concatenate([s.train, s.dev, s.test]).tolist()) for s in location_split.shadows}
    assert len(halves) == 1
    assert not np.array_equal(location_split.shadows[0].train, location_split.shadows[1].train)


def test_deterministic_for_a_seed_and_different_across_seeds(location_split):
    assert splits.make_split(5_010, 7, 5).fingerprint() == location_split.fingerprint()
    assert splits.make_split(5_010, 8, 5).fingerprint() != location_split.fingerprint()


def test_save_load_round_trip(tmp_path, location_split):
    path = tmp_path / "split.npz"
    splits.save_split(location_split, path)
    loaded = splits.load_split(path)
    assert (loaded.num_records, loaded.seed, len(loaded.shadows)) == (5_010, 7, 5)
    for original, restored in zip([location_split.victim] + location_split.shadows,
                                  [loaded.victim] + loaded.shadows):
        for field in ("train", "dev", "test"):
            np.testing.assert_array_equal(getattr(original, field), getattr(restored, field))
    assert loaded.fingerprint() == location_split.fingerprint()
    assert splits.load_split(path).fingerprint() == loaded.fingerprint()


def test_load_or_make_reuses_a_saved_split(tmp_path, location_split):
    path = tmp_path / "split.npz"
    splits.save_split(location_split, path)
    before = path.read_bytes()
    reused = splits.load_or_make_split(path, 5_010, 7, 3)
    assert path.read_bytes() == before  # not rewritten
    assert reused.shadows[2].train.tolist() == location_split.shadows[2].train.tolist()
    assert len(reused.shadows) == 3


def test_load_or_make_creates_and_extends(tmp_path):
    path = tmp_path / "split.npz"
    first = splits.load_or_make_split(path, 200, 7, 2)
    assert path.exists()
    more = splits.load_or_make_split(path, 200, 7, 4)
    assert len(more.shadows) == 4
    np.testing.assert_array_equal(more.victim.train, first.victim.train)
    np.testing.assert_array_equal(more.shadows[1].test, first.shadows[1].test)


@pytest.mark.parametrize("n, seed", [(5_011, 7), (5_010, 8)])
def test_load_or_make_rejects_a_split_for_other_data(tmp_path, location_split, n, seed):
    path = tmp_path / "split.npz"
    splits.save_split(location_split, path)
    with pytest.raises(CheckpointError, match="was made for 5010 records / seed 7"):
        splits.load_or_make_split(path, n, seed, 5)


@pytest.mark.parametrize("num_shadows", [0, -1])
def test_needs_at_least_one_shadow(num_shadows):
    with pytest.raises(ConfigError, match="at least 1 shadow"):
        splits.make_split(100, 7, num_shadows)


def test_too_few_records():
    with pytest.raises(ConfigError, match="at least 20"):
        splits.make_split(10)


def test_garbage_split_file(tmp_path):
    path = tmp_path / "split.npz"
    path.write_bytes(b"this is not an npz")
    with pytest.raises(CheckpointError, match="corrupt"):
        splits.load_split(path)
    with pytest.raises(CheckpointError):
        splits.load_or_make_split(path, 5_010, 7, 5)


def test_truncated_split_file(tmp_path):
    path = tmp_path / "split.npz"
    splits.save_split(splits.make_split(200, 7, 1), path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="corrupt"):
        splits.load_split(path)


def test_incomplete_split_file(tmp_path):
    path = tmp_path / "split.npz"
    write_npz(path, num_records=np.array(100), seed=np.array(7), num_shadows=np.array(1))
    with pytest.raises(CheckpointError, match="lacks"):
        splits.load_split(path)


def test_tampered_split_with_overlap_is_rejected(tmp_path):
    split = splits.make_split(200, 7, 1)
    path = tmp_path / "split.npz"
    splits.save_split(split, path)
    arrays = dict(np.load(path))
    arrays["shadow_0.train"] = np.concatenate([arrays["shadow_0.train"], arrays["victim.train"][:1]])
    write_npz(path, **arrays)
    with pytest.raises(CheckpointError, match="shares records with the victim"):
        splits.load_split(path)


@pytest.mark.parametrize("n", [20, 171])
def test_too_few_records_for_balanced_members_is_a_config_error_naming_a_larger_subset(n):
    """A fresh split that rounding leaves unbalanced is the user's subset size, not a damaged split file."""
    with pytest.raises(ConfigError, match="too unbalanced.*larger subset") as error:
        splits.make_split(n, 7, 1)
    assert "split file" not in str(error.value)


def test_default_sizes_are_balanced():
    assert splits.make_split(200, 7, 1).is_balanced()
