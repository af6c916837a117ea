"""Masks kept as plain variables beside a plain model (global magnitude, ADMM, channel pruning)."""
from __future__ import annotations

import abc
from typing import List, Optional, Sequence

import numpy as np

from tfprune_mia.backend import keras, tf
from tfprune_mia.pruning.base import Pruner
from tfprune_mia.training import MaskPairs


def prunable_kernel(layer: keras.layers.Layer) -> Optional[tf.Variable]:
    """The weight an unstructured pruner may zero, and the one whose entries count in sparsity and FLOPs:
    Conv/Dense kernels and depthwise kernels (nni's LevelPruner default op types)."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return layer.depthwise_kernel
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
        return layer.kernel
    return None


def prunable_kernels(net: keras.Model) -> List[tf.Variable]:
    return [kernel for kernel in (prunable_kernel(layer) for layer in net.layers) if kernel is not None]


def magnitude_threshold_mask(values: np.ndarray, sparsity: float, scores: Optional[np.ndarray] = None) -> np.ndarray:
    """nni LevelPruner: k = floor(n*s), t = the k-th smallest score, keep score > t (ties at t are pruned)."""
    scores = np.abs(values) if scores is None else scores
    k = int(np.floor(scores.size * sparsity))
    if k < 1:
        return np.ones_like(values, dtype=np.float32)
    threshold = np.partition(scores.reshape(-1), k - 1)[k - 1]
    return (scores > threshold).astype(np.float32)


def top_k_mask(values: np.ndarray, keep: int) -> np.ndarray:
    """Exactly `keep` largest-magnitude entries (ADMM's Euclidean projection onto card(W) <= keep)."""
    flat = np.abs(values).reshape(-1)
    mask = np.zeros(flat.size, dtype=np.float32)
    mask[np.argsort(-flat, kind="stable")[:keep]] = 1.0
    return mask.reshape(values.shape)


def make_pairs(variables: Sequence[tf.Variable], masks: Sequence[np.ndarray]) -> MaskPairs:
    return [(variable, tf.Variable(np.asarray(mask, dtype=variable.dtype.as_numpy_dtype), trainable=False,
                                   name=f"mask_{variable.name.split(':')[0].replace('/', '_')}"))
            for variable, mask in zip(variables, masks)]


def apply_pairs(pairs: MaskPairs) -> None:
    for variable, mask in pairs:
        variable.assign(variable * mask)


class MaskedPruner(Pruner):
    """A pruner whose masks are fixed once in `prepare`, held as plain variables beside the plain model, re-applied
    after every fine-tuning step and multiplied in before export."""

    masks_outside_model = True

    @abc.abstractmethod
    def make_masks(self, net: keras.Model) -> MaskPairs:
        """The (variable, mask) pairs of `net`, decided from its current weights."""

    def prepare(self, net, steps_per_epoch, total_steps):
        self._pairs = self.make_masks(net)
        apply_pairs(self._pairs)
        return net

    def mask_pairs(self, net) -> MaskPairs:
        return self._pairs

    def finalize(self, net):
        apply_pairs(self._pairs)
        return self.export(net)

    def export(self, net: keras.Model) -> keras.Model:
        """The model to ship once the masks are multiplied in; structured pruners return a smaller one."""
        return net
