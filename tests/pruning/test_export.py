import numpy as np
import pytest

from pruning_nets import randomise_batch_norms, tiny_cnn
from tfprune_mia.pruning import (ADMMOptions, L1UnstructuredOptions, PruneConfig, SlimmingOptions,
                                  prune_and_finetune)
from tfprune_mia.pruning.export import (TFLiteModel, export_saved_model, export_tflite, footprint,
                                        load_saved_model)
from tfprune_mia.training import TrainConfig

X = np.random.RandomState(2).rand(8, 8, 8, 1).astype(np.float32)
CONFIGS = [PruneConfig("l1_unstructured", 0.7),
           PruneConfig("l1_unstructured", 0.7, L1UnstructuredOptions(scope="global")),
           PruneConfig("l1_filter", 0.5), PruneConfig("l2_filter", 0.5),
           PruneConfig("slimming", 0.5, SlimmingOptions(mode="one_shot")),
           PruneConfig("admm", 0.7, ADMMOptions(iterations=1))]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.key)
def test_export_round_trip(seeded, digits, tmp_path, config):
    net, _ = prune_and_finetune(randomise_batch_norms(tiny_cnn()), config, *digits,
                                TrainConfig(epochs=1, batch_size=128, patience=1), tmp_path / "work", 0)
    expected = net(X, training=False).numpy()
    reloaded = load_saved_model(export_saved_model(net, tmp_path / "saved_model"))
    np.testing.assert_allclose(reloaded(X, training=False).numpy(), expected, atol=1e-5)
    flat = export_tflite(net, tmp_path / "model.tflite").read_bytes()
    np.testing.assert_allclose(TFLiteModel(flat)(X), expected, atol=1e-4)
    dense, pruned = footprint(tiny_cnn()), footprint(net)
    if config.pruner in ("l1_filter", "l2_filter", "slimming"):
        assert pruned["params"] < 0.7 * dense["params"] and pruned["flops"] < 0.6 * dense["flops"]
    else:
        assert pruned["params"] == dense["params"] and pruned["nonzero_flops"] < 0.5 * dense["flops"]
        assert pruned["h5_gzip_bytes"] < 0.8 * dense["h5_gzip_bytes"]
