"""The compiled whole-epoch attack training runs the recipe of neural.py step for step: same weights as a plain
eager loop written out from the recipe (PyTorch-form momentum, milestone LR drops, coupled weight decay)."""
import numpy as np
import pytest

from tfprune_mia.attacks import AttackContext
from tfprune_mia.attacks.neural import LEARNING_RATE, MOMENTUM, WEIGHT_DECAY, build_miafc, train_attack_model
from tfprune_mia.attacks.samia import build_samia
from tfprune_mia.backend import keras, set_seed, tf
from tfprune_mia.batch_order import pass_order


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


def test_step_dropout_keeps_the_rate_and_scaling_and_is_a_function_of_seed_and_step():
    from tfprune_mia.attacks.neural import StepDropoutMasks, step_dropout

    inputs = keras.Input((500,))
    model = keras.Model(inputs, keras.layers.Dropout(0.2)(keras.layers.Dropout(0.5)(inputs)))
    layer = model.layers[-1]
    original = layer._random_generator
    ones = tf.ones((400, 500))
    step = tf.Variable(0, dtype=tf.int64)
    with step_dropout(model, seed=7, step=step):
        assert isinstance(layer._random_generator, StepDropoutMasks)
        out = layer(ones, training=True).numpy()
        assert np.mean(out == 0) == pytest.approx(0.2, abs=0.005)  # 200k draws: SD 0.0009
        np.testing.assert_allclose(out[out != 0], 1 / 0.8, rtol=1e-6)
        assert np.array_equal(out, layer(ones, training=True).numpy())
        step.assign(1)
        assert not np.array_equal(out, layer(ones, training=True).numpy())
        assert np.mean(model(ones, training=True).numpy() == 0) == pytest.approx(1 - 0.8 * 0.5, abs=0.005)
        np.testing.assert_array_equal(layer(ones, training=False).numpy(), ones.numpy())
    assert layer._random_generator is original


@pytest.mark.parametrize("rate", [0.3, 0.99999])
def test_step_dropout_rate_off_the_8_bit_grid(rate):
    from tfprune_mia.attacks.neural import StepDropoutMasks

    # 0.3 * 2**8 = 76.8: thresholds 76 and 77 mixed 1:4 over steps; 0.99999: whole 32-bit words
    masks = StepDropoutMasks(seed=3, step=tf.Variable(0, dtype=tf.int64), index=0, num_layers=1)
    ones = tf.ones((1001, 99))  # size 3 mod 4: the last word's bytes are only partly used
    out = masks.dropout(ones, rate).numpy()
    assert out.shape == (1001, 99)
    assert np.mean(out == 0) == pytest.approx(rate, abs=0.006)


def test_step_dropout_rate_is_exact_over_steps_not_the_8_bit_floor():
    from tfprune_mia.attacks.neural import StepDropoutMasks

    # floor(0.3 * 2**8) / 2**8 = 0.2969 alone; the per-step +1 (probability 0.8) brings the mean to 0.3
    step = tf.Variable(0, dtype=tf.int64)
    masks = StepDropoutMasks(seed=5, step=step, index=0, num_layers=1)
    ones = tf.ones((64, 64))

    @tf.function
    def dropped_fraction(steps):
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            total += tf.reduce_mean(tf.cast(masks.dropout(ones, 0.3) == 0, tf.float32))
            step.assign_add(1)
        return total / tf.cast(steps, tf.float32)

    assert float(dropped_fraction(tf.constant(600))) == pytest.approx(0.3, abs=0.0012)  # 2.5M draws: SD 0.0003


def test_attack_training_applies_dropout_and_scoring_does_not():
    from tfprune_mia.attacks.neural import dropout_layers, member_probability

    assert len(dropout_layers(build_samia(10))) == 12  # 4 per encoder layer, MultiHeadAttention's included
    rng = np.random.default_rng(0)
    x, y = rng.random((300, 6)).astype(np.float32), rng.integers(0, 2, 300)
    context = AttackContext(seed=1, epochs=2, batch_size=64)
    trained = {}
    for rate in (0.2, 0.0):
        set_seed(0)
        trained[rate] = train_attack_model(build_miafc(6, dropout=rate), x, y, context)
    different = [not np.allclose(a, b) for a, b in zip(trained[0.2].get_weights(), trained[0.0].get_weights())]
    assert all(different)  # every layer's gradient went through a dropout mask
    scores = member_probability(trained[0.2], x)
    np.testing.assert_array_equal(scores, member_probability(trained[0.2], x))
    np.testing.assert_array_equal(trained[0.2](x, training=False).numpy(), trained[0.2](x, training=False).numpy())
