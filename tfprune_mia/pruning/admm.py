"""ADMM weight pruning (Zhang et al. ECCV 2018) as MCMIA (Wang et al. 2020) uses it.

Per-layer cardinality constraints card(W_i) <= keep_i on every Conv/Dense/depthwise kernel (the same per-layer
sparsity as l1_unstructured). K iterations of: W-step (E epochs of Adam on CE + coupled weight decay + extra
loss terms + sum_i rho/2 ||W_i - Z_i + U_i||^2), Z-step (Z_i = top-keep_i of W_i + U_i), dual step
(U_i += W_i - Z_i), rho <- min(rho_max, growth * rho). Then hard prune W itself (top-keep_i of |W_i|) and the
shared fine-tuning does the masked retraining with a fresh optimiser.

The W-step takes `loss_terms` (training.LossTerm) so a min-max defence (MCMIA's lambda * max_h G term) plugs in
without touching this file. Defaults: rho_0 = 1e-3 growing x1.3 per iteration, capped at 1 (the group's later
code, docs/deviations.md); one Adam (lr of the fine-tune config) across all W-steps, as in the ECCV code.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from tfprune_mia import fs
from tfprune_mia.backend import keras, tf
from tfprune_mia.errors import ConfigError, TrainingError
from tfprune_mia.io import atomic_path, read_json, write_json
from tfprune_mia.options import Options, option
from tfprune_mia.pruning.base import PRUNERS, PreTrainData
from tfprune_mia.pruning.masks import MaskedPruner, make_pairs, prunable_kernels, top_k_mask
from tfprune_mia.batch_order import make_dataset
from tfprune_mia.training import TrainingModel


def keep_count(size: int, sparsity: float) -> int:
    return size - int(np.floor(size * sparsity))


def project(values: np.ndarray, keep: int) -> np.ndarray:
    return values * top_k_mask(values, keep)


@dataclasses.dataclass(frozen=True)
class ADMMOptions(Options):
    """iterations K, epochs E per W-step, the initial penalty rho_0, its growth per iteration and its cap."""

    flag_prefix = "admm"
    iterations: int = option(10, key="K")
    epochs: int = option(1, key="E")
    rho: float = 1e-3
    rho_growth: float = option(1.3, key="growth")
    rho_max: float = option(1.0, key="rhomax")

    def validate(self):
        if self.iterations < 1 or self.epochs < 1:
            raise ConfigError(f"admm_iterations={self.iterations}, admm_epochs={self.epochs}: both must be at least 1 "
                              "(e.g. 10 and 1)")
        if not (self.rho > 0 and self.rho_growth >= 1 and self.rho_max >= self.rho):
            raise ConfigError(f"admm_rho={self.rho}, admm_rho_growth={self.rho_growth}, admm_rho_max={self.rho_max}: "
                              "ADMM needs rho > 0, growth >= 1 and max >= rho (e.g. 1e-3, 1.3, 1.0)")


@PRUNERS.register("admm")
class ADMM(MaskedPruner):
    options_class = ADMMOptions

    def pre_phase(self, net, data: PreTrainData):
        config, options = self.config, self.options
        done = data.work_dir / "admm.json"
        weights = data.work_dir / "admm_weights.h5"
        if done.exists():  # the phase finished in an earlier, interrupted run
            with fs.local_copy(weights) as local:
                net.load_weights(str(local))
            self.info["admm"] = read_json(done)
            return net
        kernels = prunable_kernels(net)
        keeps = [keep_count(int(np.prod(k.shape)), config.sparsity) for k in kernels]
        z = [tf.Variable(project(k.numpy(), keep), trainable=False) for k, keep in zip(kernels, keeps)]
        u = [tf.Variable(tf.zeros_like(k), trainable=False) for k in kernels]
        rho = tf.Variable(options.rho, trainable=False, dtype=tf.float32)

        def proximal(x, y, logits):
            return rho / 2 * tf.add_n([tf.reduce_sum(tf.square(w - zi + ui)) for w, zi, ui in zip(kernels, z, u)])

        trainer = TrainingModel(net, data.train_config.weight_decay, loss_terms=[*data.loss_terms, proximal])
        trainer.compile(optimizer=keras.optimizers.Adam(learning_rate=data.train_config.learning_rate,
                                                        epsilon=1e-8))
        dataset = make_dataset(*data.train, data.train_config.batch_size, shuffle_seed=data.seed)
        record = {"rho": [], "primal_residual": [], "dual_residual": [], "loss": []}
        for _ in range(options.iterations):
            history = trainer.fit(dataset, epochs=options.epochs, verbose=0).history
            previous = [zi.numpy() for zi in z]
            for w, zi, ui, keep in zip(kernels, z, u, keeps):
                zi.assign(project(w.numpy() + ui.numpy(), keep))
                ui.assign_add(w - zi)
            primal = math.sqrt(sum(float(tf.reduce_sum(tf.square(w - zi))) for w, zi in zip(kernels, z)))
            dual = math.sqrt(sum(float(np.sum(np.square(zi.numpy() - p))) for zi, p in zip(z, previous)))
            record["rho"].append(float(rho.numpy()))
            record["primal_residual"].append(primal)
            record["dual_residual"].append(dual)
            record["loss"].append(float(history["loss"][-1]))
            if not np.isfinite(record["loss"][-1]):
                raise TrainingError("ADMM W-step loss became NaN/inf: lower --admm_rho or the learning rate")
            rho.assign(min(options.rho_max, float(rho.numpy()) * options.rho_growth))
        with atomic_path(weights) as tmp:
            net.save_weights(str(tmp))
        write_json(done, record)
        self.info["admm"] = record
        return net

    def make_masks(self, net):
        kernels = prunable_kernels(net)
        masks = [top_k_mask(k.numpy(), keep_count(int(np.prod(k.shape)), self.config.sparsity)) for k in kernels]
        return make_pairs(kernels, masks)
