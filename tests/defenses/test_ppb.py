import numpy as np
import pytest

from tfprune_mia.backend import keras, tf
from tfprune_mia.defenses import DefenseConfig, make_defense
from tfprune_mia.defenses.ppb import PPBLoss, PPBTerm, ppb_divergence


def reference_ppb(logits):
    """PPB (Yuan & Zhang 2022) in NumPy: KL(Q || P) of ranked softmaxes, batchmean over m = n // 2 pairs."""
    m = len(logits) // 2
    if m == 0:
        return 0.0
    ranked = -np.sort(-logits, axis=1)

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    p, q = softmax(ranked[:m]), softmax(ranked[m:2 * m])
    return float(np.sum(q * (np.log(q) - np.log(p))) / m)


@pytest.mark.parametrize("batch", [1, 2, 7, 8])
def test_divergence_matches_the_paper_including_odd_batches(batch):
    logits = np.random.default_rng(batch).normal(size=(batch, 5)).astype(np.float32) * 3
    assert float(ppb_divergence(tf.constant(logits))) == pytest.approx(reference_ppb(logits), rel=1e-5, abs=1e-6)


def test_odd_batch_ignores_the_last_sample_and_ranking_ignores_class_identity():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 4)).astype(np.float32)
    with_extra = np.concatenate([logits, 100 * rng.normal(size=(1, 4)).astype(np.float32)])
    assert float(ppb_divergence(tf.constant(with_extra))) == pytest.approx(float(ppb_divergence(tf.constant(logits))))
    # Permuting the classes of one sample changes nothing: only the ranked profile matters.
    permuted = logits.copy()
    permuted[4] = permuted[4][::-1]
    assert float(ppb_divergence(tf.constant(permuted))) == pytest.approx(float(ppb_divergence(tf.constant(logits))))


def test_kl_direction_is_q_given_p():
    logits = np.array([[4.0, 0.0, 0.0], [1.0, 0.5, 0.0]], np.float32)  # P from row 0, Q from row 1
    forward = reference_ppb(logits)
    swapped = reference_ppb(logits[::-1].copy())
    assert forward != pytest.approx(swapped)  # KL is asymmetric, so the direction is observable
    assert float(ppb_divergence(tf.constant(logits))) == pytest.approx(forward, rel=1e-5)


def test_gradients_reach_both_halves():
    logits = tf.Variable(np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = ppb_divergence(logits)
    gradient = tape.gradient(loss, logits).numpy()
    assert np.abs(gradient[:2]).sum() > 0 and np.abs(gradient[2:]).sum() > 0


def test_keras_loss_is_ce_plus_lambda_kl_and_round_trips():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(8, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 8)
    ce = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits))
    loss = PPBLoss(strength=4.0)
    assert float(loss(labels, logits)) == pytest.approx(ce + 4.0 * reference_ppb(logits), rel=1e-5)
    clone = PPBLoss.from_config(loss.get_config())
    assert clone.strength == 4.0
    assert float(PPBTerm(2.0)(None, labels, tf.constant(logits))) == pytest.approx(2 * reference_ppb(logits), rel=1e-5)


def test_defense_defaults_and_keys():
    config = DefenseConfig("ppb")
    assert config.strength == 4.0 and config.key == "ppb-4"
    hooks = make_defense(config).hooks(None)
    assert isinstance(hooks[0], PPBTerm) and hooks[0].strength == 4.0
    # PPB reads only its strength: that is all its cache key holds.
    assert config.relevant() == {"name": "ppb", "strength": 4.0}
    assert DefenseConfig("ppb", 2.0).relevant() != config.relevant()
