"""Every registered attack, on synthetic signals: ~0.5 AUC when members and non-members are identically
distributed, clearly above 0.5 when the model overfits (members more confident, less sensitive). Every model's
signals carry its dense original as a released version, so the pair attacks run here too."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tfprune_mia.attacks import ATTACKS, AttackContext, MembershipSet, ReferenceSignals, Signals, make_attack
from tfprune_mia.attacks.tfp_bridge import INSTALL_HINT, tfp_available

C = 4


class World:
    """Samples with a per-sample difficulty; any model's output on a sample depends on the difficulty and,
    by `gap`, on whether the model trained on it (IN)."""

    def __init__(self, n, gap, seed):
        self.rng = np.random.default_rng(seed)
        self.labels = self.rng.integers(0, C, n)
        self.difficulty = self.rng.normal(0, 1, n)
        self.gap = gap

    def signals(self, is_in, index=slice(None)):
        """The released model's signals, with its dense original attached as a version: the dense model
        overfits 1.5x as much (pruning and fine-tuning shrink the member/non-member gap)."""
        released = self.model_signals(is_in, index, self.gap)
        return released.with_versions([self.model_signals(is_in, index, 1.5 * self.gap)])

    def model_signals(self, is_in, index, gap):
        labels, difficulty = self.labels[index], self.difficulty[index]
        n = len(labels)
        logits = self.rng.normal(0, 0.5, (n, C))
        true = 0.5 + difficulty + gap * is_in + self.rng.normal(0, 0.3, n)
        logits[np.arange(n), labels] = true
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        sensitivity = np.abs(self.rng.normal(0, 1, (n, C))) * np.exp(-(true[:, None] / 2)) * (1 - 0.5 * is_in[:, None] * (self.gap > 0))
        return Signals(p.astype(np.float32), sensitivity.astype(np.float32), labels, logits.astype(np.float32))


def scenario(gap, seed=0, n_shadow=600, n_target=600, n_population=200, num_shadows=3, num_reference=2):
    world = World(n_shadow + n_target + n_population, gap, seed)
    shadow_index = np.arange(n_shadow)
    shadow_member = world.rng.random(n_shadow) < 0.5
    shadow = MembershipSet(world.signals(shadow_member.astype(float), shadow_index), shadow_member.astype(int))
    target_index = np.arange(n_shadow, n_shadow + n_target)
    target_member = world.rng.random(n_target) < 0.5
    target = world.signals(target_member.astype(float), target_index)
    population_index = np.arange(n_shadow + n_target, len(world.labels))
    half = world.rng.random((num_reference // 2, n_target)) < 0.5
    is_in = np.concatenate([np.zeros((num_shadows, n_target), bool), half, ~half])
    models = tuple(world.signals(row.astype(float), target_index) for row in is_in)
    population_target = world.signals(np.zeros(len(population_index)), population_index)
    population = tuple(world.signals(np.zeros(len(population_index)), population_index) for _ in is_in)
    return shadow, target, target_member, ReferenceSignals(models, is_in, population_target, population)


FAST = AttackContext(seed=0, epochs=25, batch_size=128)
SAMIA_FAST = AttackContext(seed=0, epochs=8, batch_size=128)


def attack_auc(name, gap):
    shadow, target, member, reference = scenario(gap)
    if name.startswith("tfp_") and not tfp_available():
        pytest.skip(f"TF Privacy's MIA suite is not installed ({INSTALL_HINT})")
    context = SAMIA_FAST if name.startswith("samia") else FAST
    scores = make_attack(name, context).run(shadow, target, reference)
    assert scores.shape == (len(target),) and np.all(np.isfinite(scores))
    return roc_auc_score(member, scores)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_is_at_chance_on_identically_distributed_data(name):
    assert abs(attack_auc(name, gap=0.0) - 0.5) < 0.08


@pytest.mark.parametrize("name", ATTACKS.names())
def test_attack_detects_an_overfit_model(name):
    auc = attack_auc(name, gap=3.0)
    threshold = 0.55 if name == "correctness" else 0.65  # correctness only sees argmax: a coarse signal
    assert auc > threshold
