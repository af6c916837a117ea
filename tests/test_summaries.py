import math

import pytest

from tfprune_mia.errors import ConfigError
from tfprune_mia.summaries import flatten_metrics, log_metrics


def read_scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    events = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    events.Reload()
    return {tag: [(event.step, float(make_ndarray(event.tensor_proto))) for event in events.Tensors(tag)]
            for tag in events.Tags()["tensors"]}


def test_flatten_keeps_numbers_under_slash_tags():
    report = {"pruned": {"samia": {"auc": 0.61, "tpr_at_0.001_fpr": 0.02, "seconds": 3, "note": "x",
                                   "interval": None, "reused": True}}, "test_accuracy": 0.9}
    assert flatten_metrics(report) == {"pruned/samia/auc": 0.61, "pruned/samia/tpr_at_0.001_fpr": 0.02,
                                       "pruned/samia/seconds": 3.0, "test_accuracy": 0.9}


def test_metrics_are_written_as_scalars_one_run_per_configuration(tmp_path):
    assert log_metrics({"pruned/samia/auc": 0.61, "original/samia/auc": 0.55}, tmp_path / "l1-0.7", step=70) == 2
    log_metrics({"pruned/samia/auc": 0.66, "original/samia/nan": float("nan")}, tmp_path / "l1-0.9", step=90)
    first = read_scalars(tmp_path / "l1-0.7")
    assert first["pruned/samia/auc"] == [(70, pytest.approx(0.61))]
    assert first["original/samia/auc"] == [(70, pytest.approx(0.55))]
    second = read_scalars(tmp_path / "l1-0.9")
    assert second["pruned/samia/auc"] == [(90, pytest.approx(0.66))]
    assert math.isnan(second["original/samia/nan"][0][1])


@pytest.mark.parametrize("metrics", [{"auc": "0.6"}, {"": 0.5}, {"auc": None}])
def test_non_numeric_metrics_are_refused_before_writing(tmp_path, metrics):
    with pytest.raises(ConfigError):
        log_metrics(metrics, tmp_path / "run")
    assert not (tmp_path / "run").exists()
