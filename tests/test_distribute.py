"""Training under tf.distribute: MirroredStrategy over two logical CPU devices gives the weights of one device (loss
and weight decay scaled per replica), in the library and through a whole train_prune run, with every pruner's masks
held at every step; MultiWorkerMirroredStrategy trains with two local worker processes over loopback, only the
chief writing the run directory. Runs in subprocesses, since logical devices and collective ops must be configured
before TensorFlow initialises, which other tests in this process have done."""
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tfprune_mia.defenses import DefenseConfig
from tfprune_mia.distribute import STRATEGIES, make_strategy
from tfprune_mia.errors import ConfigError
from tfprune_mia.pipeline.config import ExperimentConfig
from tfprune_mia.pruning import PruneConfig

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
            fit = fit_classifier(net, (x[:391], y[:391]), (x[400:], y[400:]),
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


PIPELINE_SCRIPT = textwrap.dedent("""
    import json, sys, tempfile
    import numpy as np
    from tfprune_mia.distribute import split_cpu
    split_cpu(2)
    from absl import flags
    from tfprune_mia.backend import keras, tf
    from tfprune_mia.models.registry import build_model, register

    @register("test_mlp", "no BatchNorm or dropout, so its training does not depend on the replica count")
    def test_mlp(input_shape, num_classes):
        inputs = keras.Input(input_shape)
        hidden = keras.layers.Dense(32, activation="relu", name="fc1")(keras.layers.Flatten()(inputs))
        return keras.Model(inputs, keras.layers.Dense(num_classes, name="classifier")(hidden))

    from tfprune_mia.bin import train_prune
    from tfprune_mia.bin.common import experiment_config_from_flags
    from tfprune_mia.pipeline.roles import SETTINGS, VICTIM
    from tfprune_mia.pipeline.stages import Stages

    results = {"pipeline": {}, "masks": {}}
    for name in ("mirrored", "none"):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["train_prune", f"--run_root={sys.argv[1]}/{name}", "--model=test_mlp",
                     f"--distribution={name}", "--num_shadows=1", "--epochs=8", "--finetune_epochs=3",
                     "--learning_rate=0.01", "--batch_size=64", "--attacks=conf", "--attack_epochs=1", "--bootstrap_resamples=0",
                     "--num_perturbations=1", "--max_samples=600"])
        assert train_prune.main() == 0
        stages = Stages(experiment_config_from_flags())
        x_test = stages.arrays(stages.split.victim.test)[0]
        for setting in ("original", "pruned"):
            store = stages.model(VICTIM, SETTINGS[setting])
            net = store.load()
            results["pipeline"].setdefault(setting, {})[name] = {
                "weights": [w.tolist() for w in net.get_weights()], "meta": store.meta(),
                "posteriors": tf.nn.softmax(net.predict(x_test, verbose=0)).numpy().tolist()}

    # Every kind of pruner (tfmot's wrappers, plain mask variables of channels and BN gammas) under the strategy:
    # after every step, each replica's copy of each pruned weight is still zero.
    from tfprune_mia.data import load_dataset
    from tfprune_mia.pruning import PruneConfig, make_pruner
    from tfprune_mia.training import TrainConfig, fit_classifier

    class MaskWatch(keras.callbacks.Callback):
        def __init__(self, pairs):
            super().__init__()
            self.pairs, self.worst = pairs, 0.0

        def on_train_batch_end(self, batch, logs=None):
            for variable, mask in self.pairs:
                held = mask.numpy() == 0
                for copy in getattr(variable, "values", (variable,)):
                    self.worst = max(self.worst, float(np.abs(copy.numpy()[held]).max(initial=0.0)))

    data = load_dataset("digits")
    x, y = data.x[:512], data.y[:512]
    from tfprune_mia.distribute import strategy as strategy_named
    strategy = strategy_named("mirrored")
    for pruner_name in ("l1_unstructured", "l1_filter", "slimming"):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            net = build_model("small_cnn", data.input_shape, data.num_classes)
            pruner = make_pruner(PruneConfig(pruner_name, 0.5))
            prepared = pruner.prepare(net, 6, 12)
            pairs = pruner.mask_pairs(prepared)
            watch = MaskWatch(pairs)
            work = tempfile.mkdtemp()
            fit_classifier(prepared, (x[:384], y[:384]), (x[384:], y[384:]), TrainConfig(epochs=2, batch_size=64),
                           work, seed=0, mask_pairs=pairs, callbacks=[*pruner.callbacks(work + "/tb"), watch])
        pruned = sum(int(np.sum(mask.numpy() == 0)) for _, mask in pairs)
        results["masks"][pruner_name] = {"worst": watch.worst, "pruned": pruned,
                                         "replicas": strategy.num_replicas_in_sync}
    print("RESULT" + json.dumps(results))
""")


@pytest.fixture(scope="module")
def mirrored_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirrored")
    run = subprocess.run([sys.executable, "-c", PIPELINE_SCRIPT, str(root)], capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.split("RESULT", 1)[1])


@pytest.mark.parametrize("setting", ["original", "pruned"])
def test_train_prune_under_mirrored_on_two_cpu_devices_matches_one_device(mirrored_runs, setting):
    mirrored, single = (mirrored_runs["pipeline"][setting][name] for name in ("mirrored", "none"))
    batch = 64
    assert mirrored["meta"]["execution"] == {"distribution": "mirrored", "replicas": 2, "workers": 1,
                                             "replica_batch_size": batch // 2}
    assert single["meta"]["execution"] == {"distribution": "none", "replicas": 1, "workers": 1,
                                           "replica_batch_size": batch}
    # The victim's 135 training samples end each epoch in a batch of 7, split 4 + 3: replicas weighted by
    # 1 / replicas instead of their share of the batch trained another model (best epoch 7 instead of 5).
    kernels = [(np.asarray(a), np.asarray(b)) for a, b in zip(mirrored["weights"], single["weights"])]
    for a, b in kernels:
        np.testing.assert_array_equal(a == 0, b == 0)
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(mirrored["posteriors"], single["posteriors"], atol=1e-5)
    for field in ("train_accuracy", "dev_accuracy", "test_accuracy", "best_epoch", "epochs_run"):
        assert mirrored["meta"][field] == single["meta"][field], field
    assert single["meta"]["test_accuracy"] > 0.5
    if setting == "pruned":
        for a, _ in kernels[::2]:  # the kernels, at the configured sparsity after fine-tuning under the strategy
            assert np.mean(a == 0) == pytest.approx(0.7, abs=0.01)


@pytest.mark.parametrize("pruner", ["l1_unstructured", "l1_filter", "slimming"])
def test_every_pruner_kind_holds_its_masks_on_every_replica_at_every_step(mirrored_runs, pruner):
    record = mirrored_runs["masks"][pruner]
    assert record["replicas"] == 2 and record["pruned"] > 0
    assert record["worst"] == 0.0


def test_defenses_that_cannot_train_under_a_strategy_are_refused_with_the_fix():
    for name in ("dp", "adv"):
        with pytest.raises(ConfigError, match=f"defense {name} cannot train under --distribution=mirrored .*"
                                              "pass --distribution=none"):
            ExperimentConfig(defense=DefenseConfig(name), distribution="mirrored")
    mcmia = ExperimentConfig(defense=DefenseConfig("mcmia"), prune=PruneConfig("admm"))
    with pytest.raises(ConfigError, match="defense mcmia cannot train"):
        ExperimentConfig(defense=mcmia.defense, prune=mcmia.prune, distribution="multi_worker")
    ExperimentConfig(defense=DefenseConfig("ppb"), distribution="mirrored")  # a plain loss term trains fine
    ExperimentConfig(defense=DefenseConfig("dp"))


def test_the_distribution_is_validated_and_kept_out_of_every_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown distribution 'tpu'; choose one of: mirrored, multi_worker, none"):
        ExperimentConfig(distribution="tpu")
    single, mirrored = ExperimentConfig(), ExperimentConfig(distribution="mirrored")
    assert single.original_key() == mirrored.original_key()
    assert single.pruned_key(single.prune) == mirrored.pruned_key(mirrored.prune)
    assert single.result_key() == mirrored.result_key()
    assert ExperimentConfig.from_dict(mirrored.to_dict()) == single


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.mark.slow  # two TensorFlow processes training five models in lockstep: ~2.5 min on 2 loaded cores
def test_train_prune_under_multi_worker_with_two_local_workers(tmp_path):
    from tfprune_mia.io import read_json

    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    run_root = tmp_path / "runs"
    argv = [sys.executable, "-m", "tfprune_mia.bin.train_prune", f"--run_root={run_root}", "--distribution=multi_worker",
            "--num_shadows=1", "--epochs=2", "--finetune_epochs=1", "--batch_size=64", "--attacks=conf",
            "--attack_epochs=1", "--bootstrap_resamples=0", "--num_perturbations=1", "--max_samples=400"]
    processes = []
    for index in range(2):
        scratch = tmp_path / f"tmp{index}"
        scratch.mkdir()
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(config), "TMPDIR": str(scratch)}
        processes.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=900)
            assert process.returncode == 0, stderr[-3000:]
            outputs.append(stdout)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    tables, paths = zip(*(out.rsplit("results: ", 1) for out in outputs))
    assert tables[0] == tables[1]  # the worker trained the same models in lockstep and attacked them alike
    chief_result, worker_result = (Path(path.strip()) for path in paths)
    assert chief_result.is_relative_to(run_root) and chief_result.exists()
    # The worker wrote its copy of the run to a scratch directory, removed when it ended.
    assert worker_result.is_relative_to(tmp_path / "tmp1") and not worker_result.exists()
    assert list((tmp_path / "tmp1").iterdir()) == []
    metas = sorted(run_root.glob("*/*/victim/meta.json"))
    assert len(metas) == 2  # original and pruned
    for meta in metas:
        assert read_json(meta)["execution"] == {"distribution": "multi_worker", "replicas": 2, "workers": 2,
                                                "replica_batch_size": 32}
