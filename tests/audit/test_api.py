"""The public API: the README's example runs verbatim, every public function's docstring example runs, missing
inputs are one clear error, results round-trip, and models ending in softmax give the same signals as logits."""
import doctest
import re
from pathlib import Path

import numpy as np
import pytest

import tfprune_mia
from tfprune_mia import MembershipSet, audit, compute_signals
from tfprune_mia.attacks import SignalConfig
from tfprune_mia.audit.core import audit as audit_function
from tfprune_mia.audit.results import AuditResult, ExperimentResult
from tfprune_mia.backend import keras, set_seed
from tfprune_mia.data import load_dataset
from tfprune_mia.errors import ConfigError
from tfprune_mia.training import TrainConfig

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_python_example() -> str:
    section = README.read_text().split("## Audit your own model", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_audit_example_runs_verbatim(capsys):
    namespace = {}
    exec(compile(readme_python_example(), "README.md", "exec"), namespace)
    result = namespace["result"]
    assert isinstance(result, ExperimentResult)
    assert set(result.original.attacks) == {"samia", "rmia_offline", "conf", "loss"}
    assert all(r.ran and 0 <= r["auc"] <= 1 for r in result.original.attacks.values())
    # 300 records, 40 epochs: the MLP memorises them, and the loss attack sees it.
    assert result.original.model.train_accuracy > result.original.model.test_accuracy
    assert result.original["loss"]["auc"] > 0.55
    assert "rmia_offline" in capsys.readouterr().out


@pytest.fixture(scope="module")
def small_world():
    set_seed(0)
    data = load_dataset("digits")
    x, y = data.x, data.y

    def train(start):
        net = keras.Sequential([keras.layers.Flatten(input_shape=x.shape[1:]),
                                keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
        net.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        net.fit(x[start:start + 200], y[start:start + 200], epochs=20, verbose=0)
        return net

    return x, y, train(0), train(400)


def test_public_docstring_examples_run(small_world, tmp_path):
    x, y, net, shadow_net = small_world
    globs = {"net": net, "shadow_net": shadow_net, "x": x, "y": y, "tmp_path": tmp_path,
             "TINY_TRAIN": TrainConfig(epochs=1, batch_size=64), "SignalConfig": SignalConfig,
             "compute_signals": compute_signals, "MembershipSet": MembershipSet,
             "make_attack": tfprune_mia.make_attack, "ModelData": tfprune_mia.ModelData,
             "audit_models": tfprune_mia.audit_models}
    functions = [audit_function, tfprune_mia.compute_signals, tfprune_mia.make_attack, tfprune_mia.run_experiment,
                 tfprune_mia.audit_models]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for function in functions:
        tests = doctest.DocTestFinder().find(function, globs=dict(globs))
        assert tests and tests[0].examples, f"{function.__name__} has no docstring example"
        for test in tests:
            runner.run(test)
    assert runner.failures == 0


def test_attacks_say_which_input_is_missing(small_world):
    x, y, net, _ = small_world
    target = MembershipSet.from_parts(compute_signals(net, x[:50], y[:50], SignalConfig(2)),
                                      compute_signals(net, x[200:250], y[200:250], SignalConfig(2)))
    with pytest.raises(ConfigError, match="attack samia learns from shadow models"):
        audit(target, None, attacks=("samia",))
    with pytest.raises(ConfigError, match="attack lira_offline needs reference models"):
        audit(target, target, attacks=("conf", "lira_offline"))


def test_duplicate_attacks_run_once_and_results_round_trip(small_world):
    x, y, net, shadow_net = small_world
    signals = SignalConfig(2)
    target = MembershipSet.from_parts(compute_signals(net, x[:200], y[:200], signals),
                                      compute_signals(net, x[200:400], y[200:400], signals))
    shadow = MembershipSet.from_parts(compute_signals(shadow_net, x[400:600], y[400:600], signals),
                                      compute_signals(shadow_net, x[600:800], y[600:800], signals))
    result = audit(target, shadow, attacks=("conf", "loss", "conf"), bootstrap_resamples=10)
    assert list(result.attacks) == ["conf", "loss"]
    assert AuditResult.from_dict(result.to_dict()).to_dict() == result.to_dict()
    assert len(result["conf"].scores) == 400
    rows = result.rows()
    assert [row["attack"] for row in rows] == ["conf", "loss"] and rows[0]["auc_low"] <= rows[0]["auc"]
    table = result.table()
    assert "conf" in table and "AUC [95% interval]" in table
    header = next(line for line in table.splitlines() if line.startswith("attack"))
    # Low-FPR first: TPR at 0.1% and 1% FPR lead, AUC next, balanced accuracy last.
    assert header.index("TPR@0.1%") < header.index("TPR@1%") < header.index("AUC") < header.index("acc")


def test_softmax_output_models_give_the_same_signals_as_logit_models(small_world):
    x, y, net, _ = small_world
    with_softmax = keras.Sequential(net.layers + [keras.layers.Softmax()])
    plain = compute_signals(net, x[:64], y[:64], SignalConfig(3))
    soft = compute_signals(with_softmax, x[:64], y[:64], SignalConfig(3))
    np.testing.assert_allclose(soft.posteriors, plain.posteriors, atol=1e-5)
    np.testing.assert_allclose(soft.sensitivity, plain.sensitivity, rtol=1e-3, atol=1e-2)
    np.testing.assert_allclose(soft.logit_confidence, plain.logit_confidence, rtol=1e-4, atol=1e-3)


def test_audit_means_the_function_even_after_its_package_was_imported(small_world):
    import tfprune_mia.audit.results  # noqa: F401  (binds the package to tfprune_mia.audit)

    x, y, net, shadow_net = small_world
    target = MembershipSet.from_parts(compute_signals(net, x[:100], y[:100], SignalConfig(2)),
                                      compute_signals(net, x[200:300], y[200:300], SignalConfig(2)))
    result = tfprune_mia.audit(target, target, attacks=("loss",), bootstrap_resamples=0)
    assert isinstance(result, AuditResult)


def test_the_package_root_exports_the_public_surface_lazily():
    for name in ("audit", "audit_models", "compute_signals", "MembershipSet", "make_attack", "ExperimentConfig",
                 "run_experiment", "PruneConfig", "DefenseConfig", "AttackResult", "AuditResult",
                 "ExperimentResult"):
        assert getattr(tfprune_mia, name) is not None, name
    with pytest.raises(AttributeError):
        tfprune_mia.no_such_name
