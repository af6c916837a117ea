"""DP-SGD accounting: the demo's RDP and PLD figures, composition, calibration and the default delta."""
import math
import subprocess
import sys

import pytest

from tfprune_mia.data.splits import make_split
from tfprune_mia.defenses import accounting
from tfprune_mia.errors import ConfigError

DIGITS_RECORDS, DEMO_BATCH, DEMO_STEPS = 1797, 32, 195


@pytest.fixture(scope="module")
def demo():
    """The digits demo's fine-tuning: the victim's members, q = batch / N as the DP defense samples, and its
    15 fine-tuning epochs of ceil(N / batch) steps."""
    members = len(make_split(DIGITS_RECORDS, seed=7, num_shadows=1).victim.train)
    return members, DEMO_BATCH / members


def test_demo_figures_by_both_accountants(demo):
    members, rate = demo
    assert members == 403 and DEMO_STEPS == 15 * math.ceil(members / DEMO_BATCH)
    epsilons = accounting.dp_sgd_epsilons(1.0, rate, DEMO_STEPS, 1 / members)
    assert epsilons["rdp"] == pytest.approx(5.68, abs=0.005)
    assert epsilons["pld"] == pytest.approx(4.80, abs=0.005)
    # A delta well below 1/N costs epsilon: the promise is stronger.
    strict = accounting.dp_sgd_epsilon(1.0, rate, DEMO_STEPS, accounting.default_delta(members))
    assert strict > epsilons["rdp"]


def test_composition_costs_more_than_either_stage(demo):
    _, rate = demo
    stage = accounting.DpSgdStage(1.0, rate, DEMO_STEPS)
    single = accounting.composed_epsilon([stage], 1e-5)
    double = accounting.composed_epsilon([stage, stage], 1e-5)
    assert single < double < 2 * single
    assert double == pytest.approx(accounting.dp_sgd_epsilon(1.0, rate, 2 * DEMO_STEPS, 1e-5), rel=1e-9)


def test_no_noise_promises_nothing_and_no_steps_cost_nothing():
    assert accounting.dp_sgd_epsilon(0.0, 0.1, 10, 1e-5) == math.inf
    assert accounting.dp_sgd_epsilon(1.0, 0.1, 0, 1e-5) == 0.0
    assert accounting.composed_epsilon([accounting.DpSgdStage(0.0, 0.1, 0), accounting.DpSgdStage(1.0, 0.1, 10)],
                                       1e-5) == pytest.approx(accounting.dp_sgd_epsilon(1.0, 0.1, 10, 1e-5))


def test_calibrated_noise_meets_the_target_tightly(demo):
    _, rate = demo
    sigma = accounting.calibrate_noise(2.0, rate, DEMO_STEPS, 1e-5)
    assert accounting.dp_sgd_epsilon(sigma, rate, DEMO_STEPS, 1e-5) <= 2.0
    assert accounting.dp_sgd_epsilon(sigma - 1e-3, rate, DEMO_STEPS, 1e-5) > 2.0
    assert accounting.calibrate_noise(1e4, rate, DEMO_STEPS, 1e-5) == accounting.NOISE_FLOOR


def test_default_delta_is_well_below_one_over_n():
    assert accounting.default_delta(403) == 1e-5
    assert accounting.default_delta(10**6) == pytest.approx(10**-6.6)
    for n in (10, 403, 10**5, 10**7):
        assert accounting.default_delta(n) <= n ** -1.1 < 1 / n


@pytest.mark.parametrize("call, message", [
    (lambda: accounting.dp_sgd_epsilon(1.0, 1.5, 10, 1e-5), "sample_rate"),
    (lambda: accounting.dp_sgd_epsilon(-1.0, 0.1, 10, 1e-5), "noise_multiplier"),
    (lambda: accounting.dp_sgd_epsilon(1.0, 0.1, 2.5, 1e-5), "steps"),
    (lambda: accounting.dp_sgd_epsilon(1.0, 0.1, 10, 0.0), "delta"),
    (lambda: accounting.dp_sgd_epsilon(1.0, 0.1, 10, 1e-5, "moments"), "unknown privacy accountant"),
    (lambda: accounting.calibrate_noise(0.0, 0.1, 10, 1e-5), "target epsilon"),
    (lambda: accounting.default_delta(0), "num_records"),
])
def test_bad_inputs_name_the_problem(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


@pytest.mark.slow  # a fresh interpreter importing TensorFlow: ~4 CPU-s
def test_dp_accounting_is_imported_only_when_an_accountant_is_made():
    """Every run imports the defenses registry; only DP runs account, so they alone pay dp_accounting's import."""
    code = ("import sys; from tfprune_mia.pipeline import experiment; from tfprune_mia.defenses import accounting; "
            "before = 'dp_accounting' in sys.modules; names = sorted(accounting.ACCOUNTANTS); "
            "accounting.dp_sgd_epsilon(1.0, 0.01, 10, 1e-5, 'pld'); "
            "print(before, names, 'dp_accounting' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[-2] == "False ['pld', 'rdp'] True"
