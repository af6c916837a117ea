import numpy as np

from pruning_nets import tiny_cnn
from tfprune_mia.backend import tf
from tfprune_mia.pruning import ADMMOptions, PruneConfig, prune_and_finetune_detailed
from tfprune_mia.pruning.sparsity import sparsity_report
from tfprune_mia.training import TrainConfig, fit_classifier


def test_admm_converges_takes_loss_terms_and_hits_per_layer_target(seeded, digits, tmp_path):
    calls = tf.Variable(0.0, trainable=False)

    def extra_term(x, y, logits):  # stands in for a min-max defence's privacy term
        calls.assign_add(1.0)
        return 0.0 * tf.reduce_mean(logits)

    net = tiny_cnn()
    finetune = TrainConfig(epochs=2, batch_size=32, learning_rate=1e-2, patience=2)
    fit_classifier(net, *digits, finetune, tmp_path / "dense", seed=0)  # ADMM starts from a trained model
    config = PruneConfig("admm", 0.8, ADMMOptions(iterations=6, epochs=2, rho=0.2, rho_growth=2.0))
    result = prune_and_finetune_detailed(net, config, *digits, finetune, tmp_path / "admm", 0,
                                         loss_terms=[extra_term])
    residual = result.info["admm"]["primal_residual"]
    assert len(residual) == 6 and residual[-1] < 0.5 * residual[0], residual
    np.testing.assert_allclose(result.info["admm"]["rho"], [0.2, 0.4, 0.8, 1.0, 1.0, 1.0], rtol=1e-6)
    steps_per_epoch = int(np.ceil(600 / 32))
    assert calls.numpy() >= 13 * steps_per_epoch  # 6 W-steps of 2 epochs + fine-tuning all saw the extra term
    for name, layer in sparsity_report(result.model)["layers"].items():
        assert abs(layer["sparsity"] - 0.8) <= 0.01, name
    tmp_path = tmp_path / "admm"
    assert (tmp_path / "pre_phase" / "admm.json").exists() and (tmp_path / "masks.npz").exists()
