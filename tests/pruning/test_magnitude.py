import pytest

from pruning_nets import tiny_cnn, tiny_fc
from tfprune_mia.errors import ConfigError
from tfprune_mia.pruning import (L1UnstructuredOptions, PruneConfig, SlimmingOptions, prune_and_finetune,
                                  prune_and_finetune_detailed)
from tfprune_mia.pruning.sparsity import sparsity_report
from tfprune_mia.training import TrainConfig

FINETUNE = TrainConfig(epochs=2, batch_size=64, patience=2)


def test_tfmot_layer_scope_hits_target_per_layer_and_masks_survive(seeded, digits, tmp_path):
    net, _ = prune_and_finetune(tiny_cnn(), PruneConfig("l1_unstructured", 0.7), *digits, FINETUNE, tmp_path, 0)
    report = sparsity_report(net)
    for name, layer in report["layers"].items():
        assert abs(layer["sparsity"] - 0.7) <= 0.01, name
    assert [layer.name for layer in net.layers if "prune_low_magnitude" in layer.name] == []


def test_global_scope_hits_target_overall_and_keeps_more_of_the_larger_layer(seeded, digits, tmp_path):
    original = tiny_fc()
    classifier = original.get_layer("classifier").kernel
    classifier.assign(classifier * 10.0)  # its weights dominate the one global threshold
    weights = original.get_weights()
    global_scope = PruneConfig("l1_unstructured", 0.7, L1UnstructuredOptions(scope="global"))
    result = prune_and_finetune_detailed(original, global_scope, *digits, FINETUNE, tmp_path / "global", 0)
    report = sparsity_report(result.model)
    assert abs(report["prunable_sparsity"] - 0.7) <= 0.01
    assert report["layers"]["classifier"]["sparsity"] < 0.1 and report["layers"]["fc1"]["sparsity"] > 0.75
    # The same weights under layer scope: every layer at 0.7.
    layer_net = tiny_fc()
    layer_net.set_weights(weights)
    layer_model, _ = prune_and_finetune(layer_net, PruneConfig("l1_unstructured", 0.7), *digits, FINETUNE,
                                        tmp_path / "layer", 0)
    assert abs(sparsity_report(layer_model)["layers"]["classifier"]["sparsity"] - 0.7) <= 0.01


def test_m_by_n_sparsity(seeded, digits, tmp_path):
    config = TrainConfig(epochs=1, batch_size=64, patience=1)
    two_in_four = PruneConfig("l1_unstructured", 0.5, L1UnstructuredOptions(m_by_n="2:4"))
    net, _ = prune_and_finetune(tiny_fc(), two_in_four, *digits, config, tmp_path, 0)
    kernel = net.get_layer("fc1").kernel.numpy()  # (64, 32): blocks of 4 along the input axis
    blocks = (kernel.T.reshape(32, -1, 4) != 0).sum(axis=-1)
    assert blocks.max() <= 2 and abs(sparsity_report(net)["prunable_sparsity"] - 0.5) <= 0.01


@pytest.mark.parametrize("options", [dict(scope="global", schedule="polynomial"), dict(m_by_n="2:4"),
                                     dict(m_by_n="4"), dict(scope="everything")])
def test_inconsistent_options_are_refused(options):
    with pytest.raises(ConfigError):
        PruneConfig("l1_unstructured", 0.7, L1UnstructuredOptions(**options))


@pytest.mark.parametrize("pruner,options", [("l1_filter", L1UnstructuredOptions(scope="global")),
                                            ("l1_unstructured", SlimmingOptions())])
def test_options_of_another_pruner_are_refused_naming_the_right_class(pruner, options):
    with pytest.raises(ConfigError, match="takes options=" + ("NoOptions" if pruner == "l1_filter"
                                                                else "L1UnstructuredOptions")):
        PruneConfig(pruner, 0.7, options)
