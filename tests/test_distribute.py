"""Training under MirroredStrategy over two logical CPU devices: the same weights as on one device (loss and
weight decay scaled per replica), pruning masks still held. Runs in a subprocess, since logical devices must be
configured before TensorFlow initialises, which other tests in this process have done."""
import json
import subprocess
import sys
import textwrap

import pytest

from tfprune_mia.distribute import STRATEGIES, make_strategy

SCRIPT = textwrap.dedent("""
    import json, tempfile
    import numpy as np
    from tfprune_mia.distribute import split_cpu
    split_cpu(2)
    from tfprune_mia.backend import keras, tf
    from tfprune_mia.data import load_dataset
    from tfprune_mia.training import TrainConfig, fit_classifier

    data = load_dataset("digits")
    x, y = data.x.reshape(len(data), -1)[:600], data.y[:600]
    rng = np.random.default_rng(0)
    initial = [rng.normal(0, 0.1, (64, 32)), np.zeros(32), rng.normal(0, 0.1, (32, 10)), np.zeros(10)]
    mask_value = (np.arange(64 * 32).reshape(64, 32) % 3 != 0).astype(np.float32)
    results = {}
    for name, strategy in (("one", tf.distribute.get_strategy()),
                           ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
        with strategy.scope():
            inputs = keras.Input((64,))
            hidden = keras.layers.Dense(32, activation="relu", name="fc")(inputs)
            net = keras.Model(inputs, keras.layers.Dense(10, name="out")(hidden))
            net.set_weights([w.astype(np.float32) for w in initial])
            kernel = net.get_layer("fc").kernel
            mask = tf.Variable(mask_value, trainable=False)
            kernel.assign(kernel * mask)
            # Plain SGD: Adam would hide a wrongly scaled replica loss (its steps ignore the gradients' scale).
            fit = fit_classifier(net, (x[:400], y[:400]), (x[400:], y[400:]),
                                 TrainConfig(epochs=4, batch_size=64), tempfile.mkdtemp(), seed=0,
                                 optimizer=keras.optimizers.SGD(0.1), mask_pairs=[(kernel, mask)])
        results[name] = {"replicas": strategy.num_replicas_in_sync, "accuracy": fit.best_dev_accuracy,
                         "weights": [w.tolist() for w in net.get_weights()],
                         "masked_nonzero": int(np.count_nonzero(kernel.numpy()[mask_value == 0]))}
    print("RESULT" + json.dumps(results))
""")


def test_mirrored_training_on_two_cpu_devices_equals_one_device_and_holds_masks():
    import numpy as np

    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(run.stdout.split("RESULT", 1)[1])
    one, mirrored = results["one"], results["mirrored"]
    assert (one["replicas"], mirrored["replicas"]) == (1, 2)
    assert one["masked_nonzero"] == mirrored["masked_nonzero"] == 0
    assert mirrored["accuracy"] == pytest.approx(one["accuracy"]) and one["accuracy"] > 0.2  # above chance (0.1)
    for a, b in zip(one["weights"], mirrored["weights"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_strategies_are_registered_by_name():
    assert STRATEGIES.names() == ["mirrored", "multi_worker", "none"]
    assert make_strategy("none").num_replicas_in_sync == 1
    with pytest.raises(Exception, match="unknown distribution 'tpu'"):
        make_strategy("tpu")
