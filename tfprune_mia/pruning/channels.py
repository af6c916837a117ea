"""Channel bookkeeping for structured pruning: which channels can go, their masks, and the physically smaller model.

Every channel of every tensor in a functional model gets a label; layers that merely carry a channel through
(BN, zero-preserving activations, pooling, padding, dropout, depthwise conv, flatten) keep its label, Concatenate
concatenates labels, and Add unions the labels it sums position by position. A union-find root is then one
"removable channel": removing it means zeroing, in the masked model, the producing conv filters (and biases) and
the gamma/beta of every BatchNorm that normalises it, so the channel is exactly 0 in every tensor it appears in.
That is why the shrunk model (the channel deleted everywhere, consumers' input slices dropped) computes the same
outputs as the masked one.

Residual adds: the convs whose outputs meet in an Add (ResNet's conv2 + shortcut/stem chain, MobileNetV2's
projections) share their channels, so they are pruned together with one mask (nni's dependency-aware mode).
DenseNet concatenations need nothing special: a removed channel disappears from every later concat and every
consumer's input slice. Any layer not understood here pins its input channels (they are never removed) and gives
its outputs fresh pinned channels, so unknown layers make pruning conservative, never wrong.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Set

import numpy as np

from tfprune_mia.backend import keras
from tfprune_mia.pruning.masks import make_pairs
from tfprune_mia.training import MaskPairs

# Activations with f(0) == 0: a zeroed channel stays zero through them.
ZERO_PRESERVING = {"linear", "relu", "relu6", "tanh", "swish", "silu", "gelu", "elu", "selu", "leaky_relu"}
CHANNEL_WISE = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.ZeroPadding2D,
                keras.layers.Dropout, keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D,
                keras.layers.SpatialDropout2D)


def _activation_name(layer) -> str:
    activation = layer.get_config().get("activation", "linear")
    return activation if isinstance(activation, str) else getattr(activation, "__name__", "unknown")


def _zero_preserving(layer) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        config = layer.get_config()
        return float(config.get("threshold", 0.0)) == 0.0
    return _activation_name(layer) in ZERO_PRESERVING


def _as_list(tensors) -> list:
    return list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]


class DisjointSets:
    """Union-find over the integers 0..n-1 (path halving). A set's root is its smallest member, so roots, and the
    (score, root) orders built on them, do not depend on the order of the unions."""

    def __init__(self, count: int = 0):
        self.parent: List[int] = list(range(count))

    def add(self, count: int) -> np.ndarray:
        """`count` new singleton sets; returns their members."""
        start = len(self.parent)
        self.parent.extend(range(start, start + count))
        return np.arange(start, start + count)

    def find(self, item: int) -> int:
        parent = self.parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


class ChannelGraph:
    """Channel labels of every tensor of `net`, the union-find over them, and who produces/normalises what."""

    def __init__(self, net: keras.Model):
        self.net = net
        self.sets = DisjointSets()
        self.pinned: Set[int] = set()
        self.labels: Dict[int, np.ndarray] = {}  # id(KerasTensor) -> label per channel
        self.producers: Dict[str, np.ndarray] = {}  # Conv2D/Dense name -> labels of its output channels
        self.norms: Dict[str, np.ndarray] = {}  # BatchNormalization name -> labels of its channels
        for layer in net.layers:
            self._visit(layer)
        for output in net.outputs:
            self.pin(self.labels[id(output)])

    # -- channel labels ------------------------------------------------------------------------------------
    def fresh(self, count: int, pinned: bool = False) -> np.ndarray:
        labels = self.sets.add(count)
        if pinned:
            self.pin(labels)
        return labels

    def roots(self, labels: Iterable[int]) -> np.ndarray:
        return np.array([self.sets.find(int(label)) for label in labels], dtype=np.int64)

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        for x, y in zip(a, b):
            self.sets.union(int(x), int(y))

    def pin(self, labels: Iterable[int]) -> None:
        self.pinned.update(int(label) for label in labels)

    def pinned_roots(self) -> Set[int]:
        return {self.sets.find(label) for label in self.pinned}

    # -- graph walk ---------------------------------------------------------------------------------------
    def _visit(self, layer) -> None:
        if isinstance(layer, keras.layers.InputLayer):
            self.labels[id(layer.output)] = self.fresh(int(layer.output.shape[-1]), pinned=True)
            return
        inputs = _as_list(layer.input)
        labels = [self.labels[id(tensor)] for tensor in inputs]
        out = self._propagate(layer, inputs, labels)
        if out is None:  # not understood: keep every input channel, emit unremovable channels
            for item in labels:
                self.pin(item)
            out = self.fresh(int(layer.output.shape[-1]), pinned=True)
        self.labels[id(layer.output)] = out

    def _propagate(self, layer, inputs, labels):
        rank = len(inputs[0].shape)
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            if layer.depth_multiplier != 1 or not _zero_preserving(layer):
                return None
            return labels[0]
        if isinstance(layer, keras.layers.Conv2D):
            if layer.groups != 1 or layer.data_format != "channels_last":
                return None
            out = self.fresh(layer.filters, pinned=not _zero_preserving(layer))
            self.producers[layer.name] = out
            return out
        if isinstance(layer, keras.layers.Dense):
            if rank != 2:
                return None
            out = self.fresh(layer.units, pinned=not _zero_preserving(layer))
            self.producers[layer.name] = out
            return out
        if isinstance(layer, keras.layers.BatchNormalization):
            axis = _as_list(layer.axis)
            if axis not in ([-1], [rank - 1]):
                return None
            self.norms[layer.name] = labels[0]
            return labels[0]
        if isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)):
            return labels[0] if _zero_preserving(layer) else None
        if isinstance(layer, CHANNEL_WISE):
            if getattr(layer, "data_format", "channels_last") != "channels_last":
                return None
            return labels[0]
        if isinstance(layer, keras.layers.Add):
            for other in labels[1:]:
                self.union(labels[0], other)
            return labels[0]
        if isinstance(layer, keras.layers.Concatenate):
            if layer.axis not in (-1, rank - 1):
                return None
            return np.concatenate(labels)
        if isinstance(layer, (keras.layers.Flatten, keras.layers.Reshape)):
            out_rank = len(layer.output.shape)
            if out_rank != 2:
                return None
            # Row-major flattening of (H, W, C): element (h, w, c) lands at (h*W + w)*C + c.
            positions = int(np.prod(inputs[0].shape[1:-1])) if rank > 2 else 1
            return np.tile(labels[0], positions)
        return None

    # -- decisions -> masks / smaller model ---------------------------------------------------------------
    def keep_index(self, labels: np.ndarray, removed: Set[int]) -> np.ndarray:
        return np.array([i for i, root in enumerate(self.roots(labels)) if root not in removed], dtype=np.int64)

    def keep_vector(self, labels: np.ndarray, removed: Set[int]) -> np.ndarray:
        return np.array([root not in removed for root in self.roots(labels)], dtype=np.float32)

    def mask_pairs(self, removed: Set[int]) -> MaskPairs:
        """Masks that make every removed channel exactly 0: producer filters and biases, every BN's gamma/beta."""
        variables, masks = [], []
        for layer in self.net.layers:
            if layer.name in self.producers:
                keep = self.keep_vector(self.producers[layer.name], removed)
                if keep.all():
                    continue
                variables.append(layer.kernel)
                masks.append(np.broadcast_to(keep, layer.kernel.shape).copy())
                if layer.use_bias:
                    variables.append(layer.bias)
                    masks.append(keep)
            elif layer.name in self.norms:
                keep = self.keep_vector(self.norms[layer.name], removed)
                if keep.all():
                    continue
                for variable in (layer.gamma, layer.beta):
                    if variable is not None:
                        variables.append(variable)
                        masks.append(keep)
        return make_pairs(variables, masks)

    def shrink(self, removed: Set[int]) -> keras.Model:
        """Rebuild the graph layer by layer with the removed channels sliced out of every weight."""
        new: Dict[int, object] = {}
        for layer in self.net.layers:
            if isinstance(layer, keras.layers.InputLayer):
                new[id(layer.output)] = keras.Input(shape=layer.output.shape[1:], name=layer.name,
                                                    dtype=layer.output.dtype)
                continue
            inputs = _as_list(layer.input)
            in_keep = self.keep_index(self.labels[id(inputs[0])], removed)
            out_keep = self.keep_index(self.labels[id(layer.output)], removed)
            config, weights = layer.get_config(), layer.get_weights()
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                weights = [weights[0][:, :, in_keep, :]] + [w[in_keep] for w in weights[1:]]
            elif isinstance(layer, keras.layers.Conv2D):
                config["filters"] = len(out_keep)
                weights = [weights[0][:, :, in_keep, :][..., out_keep]] + [w[out_keep] for w in weights[1:]]
            elif isinstance(layer, keras.layers.Dense):
                config["units"] = len(out_keep)
                weights = [weights[0][in_keep][:, out_keep]] + [w[out_keep] for w in weights[1:]]
            elif isinstance(layer, keras.layers.BatchNormalization):
                weights = [w[in_keep] for w in weights]
            elif isinstance(layer, keras.layers.Reshape) and len(layer.output.shape) == 2:
                config["target_shape"] = (len(out_keep),)
            clone = type(layer).from_config(config)
            args = [new[id(tensor)] for tensor in inputs]
            new[id(layer.output)] = clone(args if isinstance(layer.input, (list, tuple)) else args[0])
            if weights:
                clone.set_weights(weights)
        return keras.Model([new[id(t)] for t in self.net.inputs], [new[id(t)] for t in self.net.outputs],
                           name=self.net.name)
