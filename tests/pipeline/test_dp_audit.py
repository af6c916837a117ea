"""The canary audit catches a planted DP bug: DP-SGD end to end with its noise switched off while the accountant
still reports the configured sigma's epsilon. With the noise on, the same audit finds no violation."""
import pytest

from tfprune_mia.attacks import SignalConfig
from tfprune_mia.defenses import DefenseConfig, DPOptions
from tfprune_mia.defenses import dp as dp_module
from tfprune_mia.pipeline.config import ExperimentConfig
from tfprune_mia.pipeline.experiment import run_experiment
from tfprune_mia.pruning import PruneConfig
from tfprune_mia.training import TrainConfig

# 600 canaries of uniform noise with random labels from digits' shadow half, ~300 of them IN beside ~400 members:
# without noise the model memorises them (IN canaries' labels at probability ~1, OUT ones ~0.1), a one-run bound
# of ~3; at sigma 3 the accountant promises epsilon ~1 at delta 1e-5. (Mislabelled digits are not memorised in
# this budget even without noise: their clean neighbours pull them back.)
SIGMA = 3.0
CONFIG = dict(dataset="digits", num_shadows=1,
              train=TrainConfig(epochs=16, batch_size=16, patience=16, learning_rate=3e-3, weight_decay=0.0),
              finetune=TrainConfig(epochs=2, batch_size=16, patience=2, learning_rate=3e-3, weight_decay=0.0),
              attacks=("conf", "loss"), attack_epochs=1, signals=SignalConfig(num_perturbations=2),
              bootstrap_resamples=0, prune=PruneConfig(sparsity=0.5),
              defense=DefenseConfig("dp", SIGMA, DPOptions(scope="end_to_end", clip=1.0)),
              canaries=600, canary_kind="noise")


def noiseless(monkeypatch):
    """The planted bug: the DP optimiser adds no noise; the defense still reports sigma (and its epsilon)."""
    real = dp_module.MaskedGaussianSumQuery

    class Noiseless(real):
        def __init__(self, l2_norm_clip, stddev):
            super().__init__(l2_norm_clip, 0.0)

    monkeypatch.setattr(dp_module, "MaskedGaussianSumQuery", Noiseless)


@pytest.mark.slow
@pytest.mark.parametrize("bug", [True, False], ids=["noise_off", "noise_on"])
def test_the_audit_flags_dp_without_noise_and_not_dp_with_it(tmp_path, monkeypatch, bug):
    if bug:
        noiseless(monkeypatch)
    result = run_experiment(ExperimentConfig(**CONFIG, run_root=str(tmp_path)))
    for setting in ("original", "pruned"):
        audit = result[setting].privacy_audit
        defense = result[setting].model.defense
        assert defense["noise_multiplier"] == SIGMA and defense["covers_released_model"]
        assert audit.accountant_epsilon == defense["epsilon"] < 3
        print(setting, "bug" if bug else "honest", audit.epsilon, audit.accountant_epsilon,
              audit.accountant_epsilon_pld, audit.best_attack)
        assert audit.violation == bug
    assert ("WARNING" in result.table()) == bug
