"""Structured pruners that physically remove channels (the authors' `l1structure`, `l2structure`, `slim`).

Filter pruning (Li et al. 2017, nni L1/L2FilterPruner): every Conv2D, the stem and 1x1 shortcut convs included,
loses n = floor(C*s) output filters with the smallest L1 (or L2) norm; Dense layers, the classifier included,
are kept. Convs coupled by a residual Add are ranked together (summed filter norms) and share one mask, so a
removed channel is removed from the whole residual stream. Depthwise convs follow their input's channels.

Network slimming (Liu et al. 2017): one global threshold over the BatchNorm |gamma| of all channels; a channel
seen by several BNs (ResNet's residual stream, DenseNet's concatenated features) scores its largest |gamma|, so
it goes only if it is unimportant in every BN that uses it. Every conv keeps at least one channel.

Deviation from nni (docs/deviations.md): the BN after a pruned filter is masked too, so a pruned channel emits 0 rather
than relu(beta); only then can it be physically removed with unchanged outputs.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Callable, Dict, List, Set

import numpy as np

from tfprune_mia.backend import keras, tf
from tfprune_mia.errors import ConfigError
from tfprune_mia.options import Options, short
from tfprune_mia.pruning.base import PRUNERS, PreTrainData
from tfprune_mia.pruning.channels import ChannelGraph, DisjointSets
from tfprune_mia.pruning.masks import MaskedPruner
from tfprune_mia.training import LossTerm, fit_classifier


def _coupled_sets(graph: ChannelGraph, names: List[str]) -> List[List[str]]:
    """Producers that share a channel (through an Add) in one set, in model order."""
    owner: Dict[int, int] = {}
    sets = DisjointSets(len(names))
    for index, name in enumerate(names):
        for root in graph.roots(graph.producers[name]):
            sets.union(index, owner.setdefault(root, index))
    groups: Dict[int, List[str]] = {}
    for index, name in enumerate(names):
        groups.setdefault(sets.find(index), []).append(name)
    return list(groups.values())


class ChannelPruner(MaskedPruner):
    """Common part: choose removed channels, hold their masks while fine-tuning, shrink the model at the end."""

    @abc.abstractmethod
    def select(self, net: keras.Model, graph: ChannelGraph) -> Set[int]:
        """The union-find roots of the channels to remove."""

    def make_masks(self, net):
        self.graph = ChannelGraph(net)
        self.removed = self.select(net, self.graph)
        self.info.update(channel_summary(self.graph, self.removed))
        return self.graph.mask_pairs(self.removed)

    def export(self, net):
        return self.graph.shrink(self.removed)


def conv_producers(net: keras.Model, graph: ChannelGraph) -> List[str]:
    return [layer.name for layer in net.layers if layer.name in graph.producers
            and isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D)]


def channel_summary(graph: ChannelGraph, removed: Set[int]) -> Dict:
    """Per conv and BN: channels before/after; `channel_sparsity` = fraction of conv filters removed."""
    layers, total, gone = {}, 0, 0
    for name, labels in graph.producers.items():
        if not isinstance(graph.net.get_layer(name), keras.layers.Conv2D):
            continue
        kept = len(graph.keep_index(labels, removed))
        layers[name] = {"channels": len(labels), "kept": kept}
        total, gone = total + len(labels), gone + len(labels) - kept
    norm_total = sum(len(labels) for labels in graph.norms.values())
    norm_gone = sum(len(labels) - len(graph.keep_index(labels, removed)) for labels in graph.norms.values())
    return {"channels": layers, "channel_sparsity": gone / total if total else 0.0,
            "bn_channel_sparsity": norm_gone / norm_total if norm_total else 0.0}


class FilterPruner(ChannelPruner):
    norm: Callable[[np.ndarray], np.ndarray]

    def select(self, net, graph):
        names = conv_producers(net, graph)
        if not names:
            raise ConfigError(f"pruner {self.config.pruner} found no Conv2D layer in {net.name}: filter pruning "
                              "needs a CNN; use l1_unstructured or admm for fully connected models")
        pinned = graph.pinned_roots()
        removed: Set[int] = set()
        for members in _coupled_sets(graph, names):
            scores: Dict[int, float] = {}
            for name in members:
                kernel = net.get_layer(name).kernel.numpy()
                per_filter = self.norm(kernel.reshape(-1, kernel.shape[-1]))
                for root, score in zip(graph.roots(graph.producers[name]), per_filter):
                    scores[root] = scores.get(root, 0.0) + float(score)
            candidates = sorted((root for root in scores if root not in pinned), key=lambda r: (scores[r], r))
            count = int(np.floor(len(scores) * self.config.sparsity))
            if len(scores) < 2 or count < 1:  # nni skips such layers
                continue
            removed.update(candidates[:min(count, len(candidates) - 1)])
        return removed


@PRUNERS.register("l1_filter")
class L1Filter(FilterPruner):
    norm = staticmethod(lambda rows: np.abs(rows).sum(axis=0))


@PRUNERS.register("l2_filter")
class L2Filter(FilterPruner):
    norm = staticmethod(lambda rows: np.sqrt(np.square(rows).sum(axis=0)))


def batch_norms(net: keras.Model) -> List[keras.layers.BatchNormalization]:
    return [layer for layer in net.layers if isinstance(layer, keras.layers.BatchNormalization) and layer.scale]


def gamma_l1_term(net: keras.Model, strength: float) -> LossTerm:
    """Liu et al.'s sparsity penalty strength * sum |gamma| over every BatchNorm."""
    gammas = [layer.gamma for layer in batch_norms(net)]

    def term(x, y, logits):
        return strength * tf.add_n([tf.reduce_sum(tf.abs(gamma)) for gamma in gammas])

    return term


SLIMMING_MODES = ("l1", "one_shot")


@dataclasses.dataclass(frozen=True)
class SlimmingOptions(Options):
    """mode: `l1` = network slimming (Liu et al. 2017): a sparsity-training phase with l1 * sum|gamma| before the
    global gamma threshold; `one_shot` = the authors' code (nni 2.2 SlimPruner, no L1 phase)."""

    flag_prefix = "slimming"
    mode: str = "l1"
    l1: float = 1e-4

    def validate(self):
        if self.mode not in SLIMMING_MODES:
            raise ConfigError(f"unknown slimming_mode {self.mode!r}; choose one of: {', '.join(SLIMMING_MODES)}")
        if self.l1 < 0:
            raise ConfigError(f"slimming_l1={self.l1}: must be >= 0 (paper: 1e-4)")

    def key_parts(self):
        # The L1 strength stays in the key even at its default: run directories always said which phase ran.
        parts = ["oneshot"] if self.mode == "one_shot" else []
        if self.mode == "l1" or self.l1 != SlimmingOptions.l1:
            parts.append(f"l1{short(self.l1)}")
        return parts


@PRUNERS.register("slimming")
class Slimming(ChannelPruner):
    options_class = SlimmingOptions

    def trains_before_masking(self):
        return not (self.options.mode == "one_shot" or self.options.l1 == 0)

    def pre_phase(self, net, data: PreTrainData):
        if not batch_norms(net):
            raise ConfigError(f"slimming needs BatchNorm layers and {net.name} has none: use l1_filter, "
                              "l1_unstructured or admm")
        if self.options.mode == "one_shot" or self.options.l1 == 0:
            self.info["slimming_phase"] = {"mode": "one_shot"}
            return net
        fit = fit_classifier(net, data.train, data.dev, data.train_config, data.work_dir, seed=data.seed,
                             loss_terms=[*data.loss_terms, gamma_l1_term(net, self.options.l1)])
        self.info["slimming_phase"] = {"mode": "l1", "l1": self.options.l1, "best_epoch": fit.best_epoch,
                                       "best_dev_accuracy": fit.best_dev_accuracy, "epochs_run": fit.epochs_run}
        return net

    def select(self, net, graph):
        pinned = graph.pinned_roots()
        scores: Dict[int, float] = {}
        for layer in batch_norms(net):
            for root, gamma in zip(graph.roots(graph.norms.get(layer.name, [])), np.abs(layer.gamma.numpy())):
                if root not in pinned:
                    scores[root] = max(scores.get(root, 0.0), float(gamma))
        if not scores:
            raise ConfigError(f"slimming found no removable BatchNorm channel in {net.name}; use l1_filter")
        ranked = sorted(scores, key=lambda r: (scores[r], r))
        removed = set(ranked[:int(np.floor(len(ranked) * self.config.sparsity))])
        # A conv left with no filter would be an invalid layer: keep its strongest channel.
        for name in conv_producers(net, graph):
            roots = [r for r in graph.roots(graph.producers[name]) if r in scores]
            if roots and all(r in removed for r in roots) and len(roots) == len(graph.producers[name]):
                removed.discard(max(roots, key=lambda r: scores[r]))
        # The target is over distinct channels: a residual-stream channel counts once, not once per BN.
        self.info["slimmed_channel_fraction"] = len(removed) / len(scores)
        self.info["gamma_threshold"] = float(scores[ranked[len(removed) - 1]]) if removed else None
        return removed
