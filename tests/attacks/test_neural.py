"""The compiled whole-epoch attack training runs the recipe of neural.py step for step: same weights as a plain
eager loop written out from the recipe (PyTorch-form momentum, milestone LR drops, coupled weight decay)."""
import numpy as np
import pytest

from tfprune_mia.attacks import AttackContext
from tfprune_mia.attacks.neural import LEARNING_RATE, MOMENTUM, WEIGHT_DECAY, build_miafc, train_attack_model
from tfprune_mia.attacks.samia import build_samia
from tfprune_mia.backend import keras, set_seed, tf
from tfprune_mia.training import pass_order


def reference_loop(model, x, y, context):
    """The recipe by hand: eager steps, velocity v <- mu*v + g + wd*w, w <- w - lr*v, lr /10 at 50% and 75%."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables
    velocities = [tf.zeros_like(v) for v in variables]
    milestones = [int(context.epochs * f) for f in (0.5, 0.75)]
    for epoch in range(context.epochs):
        lr = LEARNING_RATE * 0.1 ** sum(epoch >= m > 0 for m in milestones)
        order = pass_order(len(y), context.seed, epoch).numpy()
        for start in range(0, len(y), context.batch_size):
            index = order[start:start + context.batch_size]
            with tf.GradientTape() as tape:
                loss = loss_fn(y[index], model(x[index], training=True))
            gradients = tape.gradient(loss, variables)
            for i, (g, v) in enumerate(zip(gradients, variables)):
                velocities[i] = MOMENTUM * velocities[i] + g + WEIGHT_DECAY * v
                v.assign_sub(lr * velocities[i])


@pytest.mark.parametrize("build", [lambda: build_miafc(6, dropout=0.0),
                                   lambda: build_samia(2, num_layers=1, dropout=0.0)], ids=["miafc", "samia"])
def test_compiled_epochs_give_the_weights_of_the_plain_recipe_loop(build):
    rng = np.random.default_rng(0)
    x = rng.random((150, 6)).astype(np.float32)  # 150 = 2 batches of 64 + a partial one of 22
    y = rng.integers(0, 2, 150)
    context = AttackContext(seed=3, epochs=4, batch_size=64)  # milestones at epochs 2 and 3
    set_seed(0)
    compiled, plain = build(), build()
    plain.set_weights(compiled.get_weights())
    initial = [w.copy() for w in compiled.get_weights()]
    train_attack_model(compiled, x, y, context)
    reference_loop(plain, x, y, context)
    moved = max(float(np.max(np.abs(want - before))) for want, before in zip(plain.get_weights(), initial))
    assert moved > 1e-4  # the comparison is not between two untouched models
    for got, want in zip(compiled.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-8)


def test_pass_order_depends_on_seed_and_pass_only():
    order = pass_order(50, 1, 2).numpy()
    assert np.array_equal(order, pass_order(50, 1, 2).numpy())
    assert sorted(order) == list(range(50))
    assert not np.array_equal(order, pass_order(50, 1, 3).numpy())
    assert not np.array_equal(order, pass_order(50, 2, 2).numpy())
