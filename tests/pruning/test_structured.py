import numpy as np
import pytest

from pruning_nets import randomise_batch_norms, tiny_cnn, tiny_densenet, tiny_fc, tiny_resnet
from tfprune_mia.backend import keras
from tfprune_mia.errors import ConfigError
from tfprune_mia.pruning import PruneConfig, SlimmingOptions, make_pruner, prune_and_finetune_detailed
from tfprune_mia.pruning.sparsity import sparsity_report
from tfprune_mia.training import TrainConfig, fit_classifier

X = np.random.RandomState(1).rand(16, 8, 8, 1).astype(np.float32)
STRUCTURED = [("l1_filter", None), ("l2_filter", None), ("slimming", SlimmingOptions(mode="one_shot"))]


@pytest.mark.parametrize("builder", [tiny_cnn, tiny_resnet, tiny_densenet])
@pytest.mark.parametrize("pruner,options", STRUCTURED)
def test_shrunk_model_equals_masked_model(seeded, builder, pruner, options):
    net = randomise_batch_norms(builder())
    dense_output = net(X, training=False).numpy()
    p = make_pruner(PruneConfig(pruner, 0.5, options))
    masked = p.prepare(net, 1, 1)
    masked_output = masked(X, training=False).numpy()
    assert np.abs(masked_output - dense_output).max() > 1e-3  # pruning did change the function
    shrunk = p.finalize(masked)
    assert shrunk.count_params() < 0.8 * net.count_params()
    np.testing.assert_allclose(shrunk(X, training=False).numpy(), masked_output, atol=1e-5)
    # Target: the fraction of filters (filter pruners) or distinct BN channels (slimming) removed.
    achieved = p.info["slimmed_channel_fraction"] if pruner == "slimming" else p.info["channel_sparsity"]
    assert abs(achieved - 0.5) <= 0.01


def test_residual_channels_are_pruned_together(seeded):
    net = randomise_batch_norms(tiny_resnet())
    p = make_pruner(PruneConfig("l1_filter", 0.5))
    shrunk = p.finalize(p.prepare(net, 1, 1))
    widths = {layer.name: layer.filters for layer in shrunk.layers if isinstance(layer, keras.layers.Conv2D)}
    # conv1, layer1.0.conv2 and layer1.1.conv2 feed the same additions: one shared mask, same width.
    assert widths["conv1"] == widths["layer1.0.conv2"] == widths["layer1.1.conv2"] == 4
    assert widths["layer2.0.conv2"] == widths["layer2.0.shortcut.conv"] == 8
    assert widths["layer1.0.conv1"] == 4


def test_filter_ranking_uses_the_norm(seeded):
    net = tiny_cnn()
    kernel = net.get_layer("conv1").kernel
    weights = np.full(kernel.shape, 0.01, np.float32)
    weights[..., 3] = 1.0  # the one filter that must survive everything
    kernel.assign(weights)
    p = make_pruner(PruneConfig("l1_filter", 0.875))
    p.prepare(net, 1, 1)
    np.testing.assert_array_equal(np.nonzero(net.get_layer("conv1").kernel.numpy()[0, 0, 0])[0], [3])


@pytest.mark.parametrize("pruner,options", STRUCTURED)
def test_structured_pruners_refuse_fully_connected_models(pruner, options):
    p = make_pruner(PruneConfig(pruner, 0.5, options))
    with pytest.raises(ConfigError):
        p.prepare(p.pre_phase(tiny_fc(), None), 1, 1)


def test_channel_masks_survive_fine_tuning(seeded, digits, tmp_path):
    net = randomise_batch_norms(tiny_cnn())
    p = make_pruner(PruneConfig("l1_filter", 0.5))
    prepared = p.prepare(net, 1, 1)
    pruned = net.get_layer("conv2").kernel.numpy().reshape(-1, 16).any(axis=0) == 0
    assert pruned.sum() == 8
    fit_classifier(prepared, *digits, TrainConfig(epochs=2, batch_size=64, patience=2), tmp_path, seed=0,
                   mask_pairs=p.mask_pairs(prepared))
    conv2, bn2 = net.get_layer("conv2"), net.get_layer("bn2")
    assert not conv2.kernel.numpy()[..., pruned].any() and not conv2.bias.numpy()[pruned].any()
    assert not bn2.gamma.numpy()[pruned].any() and not bn2.beta.numpy()[pruned].any()
    assert conv2.kernel.numpy()[..., ~pruned].all()


def test_slimming_l1_phase_shrinks_gammas_and_the_full_step_exports_a_smaller_model(seeded, digits, tmp_path):
    original = tiny_cnn()
    fit_classifier(original, *digits, TrainConfig(epochs=1, batch_size=64, patience=1), tmp_path / "o", seed=0)
    weights = original.get_weights()
    gamma_sum = lambda net: sum(np.abs(net.get_layer(n).gamma.numpy()).sum() for n in ("bn1", "bn2"))
    reference = tiny_cnn()
    reference.set_weights(weights)
    config = TrainConfig(epochs=2, batch_size=64, patience=2)
    result = prune_and_finetune_detailed(original, PruneConfig("slimming", 0.5, SlimmingOptions(l1=1e-2)), *digits,
                                         config, tmp_path / "p", seed=0)
    assert result.info["slimming_phase"]["mode"] == "l1"
    plain = tiny_cnn()
    plain.set_weights(weights)
    fit_classifier(plain, *digits, config, tmp_path / "plain", seed=0)
    report = sparsity_report(result.model, reference)
    assert report["layers"]["conv2"]["kept_shape"][-1] < 16
    assert report["trainable_params"] < reference.count_params()
    assert result.info["gamma_threshold"] is not None
    # The L1 phase pulls gammas down compared with the same training without it.
    l1_trained = tiny_cnn()
    l1_trained.set_weights(weights)
    from tfprune_mia.pruning.structured import gamma_l1_term
    fit_classifier(l1_trained, *digits, config, tmp_path / "l1", seed=0, loss_terms=[gamma_l1_term(l1_trained, 1e-2)])
    assert gamma_sum(l1_trained) < gamma_sum(plain)
