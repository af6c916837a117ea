"""Canary sets: fair independent coin flips, exact persistence, training arrays with exactly the IN canaries."""
import numpy as np
import pytest
from scipy import stats

from tfprune_mia.data import canaries as canary_lib
from tfprune_mia.errors import CheckpointError, ConfigError
from tfprune_mia.io import read_npz, write_npz

NUM_CLASSES = 10


@pytest.fixture(scope="module")
def dataset():
    rng = np.random.default_rng(0)
    x = rng.random((3000, 4, 4, 1)).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, size=3000).astype(np.int64)
    return x, y


def test_inclusion_is_a_fair_independent_coin(dataset):
    _, y = dataset
    canaries = canary_lib.make_canaries(y, NUM_CLASSES, count=2000, seed=1)
    # Two-sided binomial test at 0.1%: a biased or fixed-half draw would fail (it is Bernoulli, not exactly m/2).
    assert stats.binomtest(int(canaries.included.sum()), 2000, 0.5).pvalue > 1e-3
    # Independence: consecutive coins agree about half the time, and the count varies across seeds.
    agree = np.mean(canaries.included[1:] == canaries.included[:-1])
    assert abs(agree - 0.5) < 0.05
    counts = {int(canary_lib.make_canaries(y, NUM_CLASSES, 100, seed=s).included.sum()) for s in range(20)}
    assert len(counts) > 3


def test_seeded_and_kind_does_not_change_the_draw(dataset):
    _, y = dataset
    a = canary_lib.make_canaries(y, NUM_CLASSES, 50, "mislabel", seed=4)
    b = canary_lib.make_canaries(y, NUM_CLASSES, 50, "noise", seed=4)
    assert a.fingerprint() == canary_lib.make_canaries(y, NUM_CLASSES, 50, "mislabel", seed=4).fingerprint()
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.included, b.included)
    assert not np.array_equal(a.indices, canary_lib.make_canaries(y, NUM_CLASSES, 50, seed=5).indices)


def test_mislabelled_canaries_carry_a_wrong_label_from_the_pool(dataset):
    _, y = dataset
    pool = np.arange(1000, 2000)
    canaries = canary_lib.make_canaries(y, NUM_CLASSES, 300, "mislabel", seed=2, pool=pool)
    assert np.all(np.isin(canaries.indices, pool)) and len(np.unique(canaries.indices)) == 300
    assert np.all(canaries.labels != y[canaries.indices])
    assert len(np.unique(canaries.labels)) == NUM_CLASSES  # every wrong label is reachable


@pytest.mark.parametrize("kind", ["noise", "invert"])
def test_out_of_distribution_inputs_are_reproducible_and_in_range(dataset, kind):
    x, y = dataset
    canaries = canary_lib.make_canaries(y, NUM_CLASSES, 40, kind, seed=3)
    inputs, labels = canary_lib.canary_records(canaries, x)
    again, _ = canary_lib.canary_records(canaries, x)
    assert np.array_equal(inputs, again) and inputs.dtype == x.dtype and inputs.shape == (40,) + x.shape[1:]
    assert not np.allclose(inputs, x[canaries.indices])
    assert inputs.min() >= x.min() and inputs.max() <= x.max()
    assert np.array_equal(labels, canaries.labels)
    if kind == "invert":
        np.testing.assert_allclose(inputs, x.min() + x.max() - x[canaries.indices], rtol=1e-6)


def test_save_and_load_round_trip_exactly(tmp_path, dataset):
    _, y = dataset
    canaries = canary_lib.make_canaries(y, NUM_CLASSES, 500, "noise", seed=9, pool=np.arange(2000, 3000))
    canary_lib.save_canaries(canaries, tmp_path / "canaries.npz")
    loaded = canary_lib.load_canaries(tmp_path / "canaries.npz")
    for field in ("indices", "labels", "included"):
        assert np.array_equal(getattr(loaded, field), getattr(canaries, field))
        assert getattr(loaded, field).dtype == getattr(canaries, field).dtype
    assert (loaded.kind, loaded.seed, loaded.num_classes, loaded.num_records) == ("noise", 9, NUM_CLASSES, 3000)
    assert loaded.fingerprint() == canaries.fingerprint()


def test_load_or_make_never_redraws_a_saved_set(tmp_path, dataset):
    _, y = dataset
    path = tmp_path / "canaries.npz"
    first = canary_lib.load_or_make_canaries(path, y, NUM_CLASSES, 100, seed=1)
    assert canary_lib.load_or_make_canaries(path, y, NUM_CLASSES, 100, seed=1).fingerprint() == first.fingerprint()
    with pytest.raises(CheckpointError, match="delete it"):
        canary_lib.load_or_make_canaries(path, y, NUM_CLASSES, 100, seed=2)


def test_the_secret_is_read_only(dataset):
    _, y = dataset
    canaries = canary_lib.make_canaries(y, NUM_CLASSES, 10, seed=0)
    with pytest.raises(ValueError):
        canaries.included[0] = not canaries.included[0]
    with pytest.raises(Exception):
        canaries.kind = "noise"


@pytest.mark.parametrize("kind", ["mislabel", "noise"])
def test_training_arrays_hold_exactly_the_in_canaries(dataset, kind):
    x, y = dataset
    train = np.arange(0, 1000)
    canaries = canary_lib.make_canaries(y, NUM_CLASSES, 200, kind, seed=6, pool=np.arange(1000, 3000))
    x_train, y_train = canary_lib.training_arrays(x, y, train, canaries)
    m_in = int(canaries.included.sum())
    assert len(x_train) == len(y_train) == 1000 + m_in and y_train.dtype == y.dtype
    assert np.array_equal(x_train[:1000], x[train]) and np.array_equal(y_train[:1000], y[train])
    canary_x, canary_y = canary_lib.canary_records(canaries, x)
    assert np.array_equal(x_train[1000:], canary_x[canaries.included])
    assert np.array_equal(y_train[1000:], canary_y[canaries.included])
    # No OUT canary slipped in, under its canary form or its original one.
    flat = x_train.reshape(len(x_train), -1)
    for record in canary_x[~canaries.included]:
        assert not np.any(np.all(flat == record.reshape(-1), axis=1))
    for index in canaries.indices[~canaries.included]:
        assert not np.any(np.all(flat == x[index].reshape(-1), axis=1))


def test_canaries_must_not_be_ordinary_members(dataset):
    x, y = dataset
    canaries = canary_lib.make_canaries(y, NUM_CLASSES, 20, seed=0)
    with pytest.raises(ConfigError, match="outside the training set"):
        canary_lib.training_arrays(x, y, np.arange(3000), canaries)


@pytest.mark.parametrize("change, message", [
    (lambda a: {**a, "included": a["included"].astype(np.int64)}, "boolean"),
    (lambda a: {**a, "indices": a["indices"] + 10_000}, r"records in \[0, 3000\)"),
    (lambda a: {**a, "labels": a["labels"] + NUM_CLASSES}, "labels must lie"),
    (lambda a: {k: v for k, v in a.items() if k != "seed"}, "lacks"),
    (lambda a: {**a, "kind": np.array("poison")}, "unknown canary kind"),
])
def test_corrupt_files_are_refused(tmp_path, dataset, change, message):
    _, y = dataset
    path = tmp_path / "canaries.npz"
    canary_lib.save_canaries(canary_lib.make_canaries(y, NUM_CLASSES, 30, seed=0), path)
    write_npz(path, **change(read_npz(path)))
    with pytest.raises(CheckpointError, match=message):
        canary_lib.load_canaries(path)


@pytest.mark.parametrize("kwargs, message", [
    ({"count": 0}, "between 1 and"), ({"count": 5000}, "between 1 and"), ({"kind": "poison"}, "unknown canary kind"),
    ({"pool": [-1, 2, 3]}, "outside"), ({"num_classes": 1}, "at least 2 classes")])
def test_bad_requests_name_the_fix(dataset, kwargs, message):
    _, y = dataset
    arguments = {"labels": y, "num_classes": NUM_CLASSES, "count": 10, **kwargs}
    with pytest.raises(ConfigError, match=message):
        canary_lib.make_canaries(**arguments)
