import io

import numpy as np
import pytest

from tfprune_mia import progress
from tfprune_mia.progress import Progress, ProgressCallback, format_duration


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(autouse=True)
def no_active_progress():
    yield
    assert not progress._active, "a test left a progress open"


def lines(stream):
    return stream.getvalue().splitlines()


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (59.4, "59s"), (61, "1m01s"), (3599, "59m59s"),
                                          (3600 * 2 + 120, "2h02m")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_log_lines_name_each_stage_with_eta_from_the_observed_rate():
    out, clock = io.StringIO(), Clock()
    with Progress(4, "shadows", stream=out, quiet=False, is_tty=False, clock=clock) as stages:
        for index in range(4):
            stages.start(f"training shadow_{index}")
            clock.now += 10
            stages.step()
    assert lines(out) == ["[shadows 0/4] training shadow_0",
                          "[shadows 1/4 · ETA 30s] training shadow_1",
                          "[shadows 2/4 · ETA 20s] training shadow_2",
                          "[shadows 3/4 · ETA 10s] training shadow_3",
                          "[shadows 4/4 · 40s] training shadow_3"]


def test_eta_ignores_work_resumed_from_an_earlier_process():
    clock = Clock()
    resumed = Progress(10, quiet=True, clock=clock).open(done=8)
    try:
        assert resumed.eta() is None  # nothing finished here yet: no rate to extrapolate
        clock.now += 5
        resumed.step()
        assert resumed.eta() == pytest.approx(5.0)
    finally:
        resumed.close()


def test_inner_progress_is_throttled_in_logs_and_nested_under_its_stage():
    out, clock = io.StringIO(), Clock()
    with Progress(2, "stage", stream=out, quiet=False, is_tty=False, clock=clock) as stages:
        stages.start("fine-tuning victim")
        with Progress(100, "epoch", stream=out, quiet=False, is_tty=False, clock=clock, log_interval=30) as epochs:
            for epoch in range(100):
                clock.now += 1
                epochs.update(epoch + 1)
        stages.step()
    text = lines(out)
    inner = [line for line in text if "epoch" in line.split("|")[-1]]
    assert 3 <= len(inner) <= 5, text  # one line per 30 s of 100 s, plus the completion line
    assert all(line.startswith("[stage 0/2] fine-tuning victim | [epoch ") for line in inner), inner
    assert inner[-1].endswith("[epoch 100/100 · 1m40s]")


def test_terminal_rewrites_one_line_and_ends_it_once():
    out, clock = io.StringIO(), Clock()
    with Progress(3, "stage", stream=out, quiet=False, is_tty=True, clock=clock) as stages:
        for index in range(3):
            clock.now += 1
            stages.start(f"step {index}")
            stages.step()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert text.count("\r") >= 6
    assert text.rstrip("\n").split("\r")[-1].startswith("[stage 3/3 · 3s] step 2")


def test_quiet_by_environment(monkeypatch):
    out = io.StringIO()
    monkeypatch.setenv(progress.ENV, "0")
    with Progress(2, "stage", stream=out, is_tty=False) as stages:
        stages.start("work")
        stages.step()
        stages.step()
    assert out.getvalue() == ""
    monkeypatch.setenv(progress.ENV, "1")
    assert progress.enabled()


def test_the_test_suite_runs_quiet():
    assert not progress.enabled()  # tests/conftest.py: progress would interleave with pytest's own output


def tiny_fit(callback, epochs, initial_epoch=0):
    from tfprune_mia.backend import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = np.random.default_rng(0).normal(size=(64, 3)), np.arange(64) % 2
    model.fit(x, y, batch_size=16, epochs=epochs, initial_epoch=initial_epoch, verbose=0, callbacks=[callback])


def test_keras_callback_reports_epochs_and_batches():
    out = io.StringIO()
    tiny_fit(ProgressCallback(stream=out, quiet=False, is_tty=False, log_interval=0), epochs=3)
    text = lines(out)
    assert any(line.startswith("[epoch 0/3] batch 4/4, loss ") for line in text), text
    assert text[-1].startswith("[epoch 3/3 · ") and "loss" in text[-1]
    assert not progress._active  # closed at the end of fit


def test_keras_callback_counts_from_the_resumed_epoch():
    out = io.StringIO()
    callback = ProgressCallback(stream=out, quiet=False, is_tty=False, log_interval=0)
    tiny_fit(callback, epochs=5, initial_epoch=3)
    text = lines(out)
    assert text[0].startswith("[epoch 3/5]"), text
    assert text[-1].startswith("[epoch 5/5 · ")
