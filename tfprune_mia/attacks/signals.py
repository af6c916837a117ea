"""Per-sample signals, the only thing attacks see (Yuan & Zhang 2022): posteriors, per-class sensitivities, labels.

Sensitivity s_k(x) = mean_j |softmax(f(x + eps*u_j))_k - p_k(x)| / eps over m Gaussian directions u_j, in
normalised input space. The m perturbed copies of a batch go through the model in one compiled call, in float32
with TF32 off (backend), and the noise is drawn from a seeded stateless generator so signals are reproducible.
The last batch is zero-padded to the full batch size so the traced function sees one shape and never retraces.

Logits are kept beside the posteriors: LiRA's logit-scaled confidence log(p_y / (1 - p_y)) is computed from
them stably, where float32 posteriors would saturate at p_y = 1 for confidently fitted members.
"""
from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from tfprune_mia.backend import keras, tf
from tfprune_mia.errors import ConfigError
from tfprune_mia.io import read_npz, write_npz

LOG_FLOOR = 1e-30


@dataclasses.dataclass(frozen=True)
class SignalConfig:
    num_perturbations: int = 10
    epsilon: float = 1e-3
    noise_seed: int = 0
    batch_size: int = 256

    def __post_init__(self):
        if self.num_perturbations < 1:
            raise ConfigError(f"num_perturbations={self.num_perturbations}: the sensitivity signal needs "
                              "num_perturbations >= 1; pass e.g. --num_perturbations=10")
        if not self.epsilon > 0:
            raise ConfigError(f"perturbation_epsilon={self.epsilon}: must be positive; pass e.g. "
                              "--perturbation_epsilon=0.001")


@dataclasses.dataclass(frozen=True)
class Signals:
    posteriors: np.ndarray  # [n, C] softmax outputs
    sensitivity: np.ndarray  # [n, C]
    labels: np.ndarray  # [n] ground-truth classes
    logits: Optional[np.ndarray] = None  # [n, C] pre-softmax outputs; None for signals cached by older versions
    # The same samples' signals under the model's other released versions (for a pruned model: its dense
    # original first, then any other released sparsity), for attackers who hold several versions (pair
    # attacks). Attached at assembly time, never cached with the signals: () for a model released alone.
    versions: Tuple["Signals", ...] = ()

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return self.posteriors.shape[1]

    @property
    def true_class_confidence(self) -> np.ndarray:
        return self.posteriors[np.arange(len(self)), self.labels]

    @property
    def true_class_sensitivity(self) -> np.ndarray:
        return self.sensitivity[np.arange(len(self)), self.labels]

    @property
    def losses(self) -> np.ndarray:
        return -np.log(np.maximum(self.true_class_confidence, LOG_FLOOR))

    @property
    def correct(self) -> np.ndarray:
        return np.argmax(self.posteriors, axis=1) == self.labels

    @property
    def logit_confidence(self) -> np.ndarray:
        """LiRA's statistic log(p_y / (1 - p_y)) = z_y - logsumexp_{j != y} z_j, from logits when available."""
        rows = np.arange(len(self))
        if self.logits is not None:
            z = self.logits.astype(np.float64)
            z = z - z.max(axis=1, keepdims=True)
            others = z.copy()
            others[rows, self.labels] = -np.inf
            peak = others.max(axis=1, keepdims=True)
            log_others = np.log(np.sum(np.exp(others - peak), axis=1)) + peak[:, 0]
            return z[rows, self.labels] - log_others
        p = self.posteriors.astype(np.float64)
        p_y = p[rows, self.labels]
        return np.log(np.maximum(p_y, LOG_FLOOR)) - np.log(np.maximum(1.0 - p_y, LOG_FLOOR))

    def one_hot(self) -> np.ndarray:
        return np.eye(self.num_classes, dtype=np.float32)[self.labels]

    def subset(self, index) -> "Signals":
        return Signals(self.posteriors[index], self.sensitivity[index], self.labels[index],
                       None if self.logits is None else self.logits[index],
                       tuple(v.subset(index) for v in self.versions))

    def with_versions(self, versions: Sequence["Signals"]) -> "Signals":
        """These signals with `versions` attached (each must cover the same samples, with the same labels)."""
        for version in versions:
            if len(version) != len(self) or not np.array_equal(version.labels, self.labels):
                raise ConfigError("a released version's signals cover other samples than the model's own; "
                                  "compute both on the same samples in the same order")
        return dataclasses.replace(self, versions=tuple(versions))

    @staticmethod
    def concat(parts: Sequence["Signals"]) -> "Signals":
        logits = None
        if all(p.logits is not None for p in parts):
            logits = np.concatenate([p.logits for p in parts])
        counts = {len(p.versions) for p in parts}
        if len(counts) > 1:
            raise ConfigError("signals with and without released versions cannot be concatenated; attach the "
                              "same versions to every part")
        versions = tuple(Signals.concat([p.versions[k] for p in parts]) for k in range(counts.pop() if parts else 0))
        return Signals(np.concatenate([p.posteriors for p in parts]),
                       np.concatenate([p.sensitivity for p in parts]),
                       np.concatenate([p.labels for p in parts]), logits, versions)

    def save(self, path: Path) -> None:
        extra = {} if self.logits is None else {"logits": self.logits}
        write_npz(path, posteriors=self.posteriors, sensitivity=self.sensitivity, labels=self.labels, **extra)

    @staticmethod
    def load(path: Path) -> "Signals":
        data = read_npz(path)
        return Signals(data["posteriors"], data["sensitivity"], data["labels"], data.get("logits"))


@dataclasses.dataclass(frozen=True)
class MembershipSet:
    """Signals of members and non-members of one or more models, with the ground truth (1 = member)."""

    signals: Signals
    is_member: np.ndarray

    @staticmethod
    def from_parts(members: Signals, non_members: Signals) -> "MembershipSet":
        labels = np.concatenate([np.ones(len(members), np.int64), np.zeros(len(non_members), np.int64)])
        return MembershipSet(Signals.concat([members, non_members]), labels)

    @staticmethod
    def concat(parts: Sequence["MembershipSet"]) -> "MembershipSet":
        return MembershipSet(Signals.concat([p.signals for p in parts]),
                             np.concatenate([p.is_member for p in parts]))


def compute_signals(net: keras.Model, x: np.ndarray, y: np.ndarray, config: SignalConfig = SignalConfig(),
                    with_sensitivity: bool = True) -> Signals:
    """Posteriors, logits and (unless with_sensitivity=False, for reference models whose sensitivity no attack
    reads: 11x cheaper) sensitivities of `net` on (x, y). Without sensitivity that field is NaN, never zeros,
    so a misuse cannot pass silently. `net` may end in logits or in a softmax (then logits = log p).

    >>> signals = compute_signals(net, x[:5], y[:5], SignalConfig(num_perturbations=2))
    >>> signals.posteriors.shape, signals.sensitivity.shape, len(signals)
    ((5, 10), (5, 10), 5)
    """
    m, eps = config.num_perturbations, config.epsilon
    x = np.asarray(x, np.float32)
    batch_size = max(1, min(config.batch_size, len(x)))
    outputs = ([], [], [])
    with exact_float32():
        batch_signals = _signal_function(float32_twin(net), (batch_size,) + x.shape[1:], m, eps, with_sensitivity)
        for index, start in enumerate(range(0, len(x), batch_size)):
            batch = x[start:start + batch_size]
            real = len(batch)
            if real < batch_size:  # pad with zeros (their outputs are dropped) to keep the one traced shape
                batch = np.concatenate([batch, np.zeros((batch_size - real,) + x.shape[1:], np.float32)])
            seed = tf.constant([config.noise_seed, index], tf.int64)
            for store, value in zip(outputs, batch_signals(tf.constant(batch), seed)):
                store.append(value.numpy()[:real])
    num_classes = net.output_shape[-1]
    logits, posteriors, sensitivities = (np.concatenate(o) if o else np.zeros((0, num_classes), np.float32)
                                         for o in outputs)
    return Signals(posteriors, sensitivities, np.asarray(y, np.int64), logits)


@contextlib.contextmanager
def exact_float32():
    """TF32 matmuls and the mixed-precision policy off while signals are computed, whatever the training set:
    the sensitivity is a finite difference at eps = 1e-3, which TF32's 10-bit or float16's 11-bit mantissa
    turns into rounding noise. Both settings are process-wide; the previous ones come back afterwards."""
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    policy = keras.mixed_precision.global_policy()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)
        tf.config.experimental.enable_tensor_float_32_execution(tf32)


def float32_twin(net: keras.Model) -> keras.Model:
    """`net` itself when every layer computes in float32; otherwise (a net built under mixed precision) a copy
    with float32 layers and `net`'s current weights, cached on `net` so it traces once. A layer's compute dtype
    is fixed when it is built, so the global policy alone would not change how the trained net computes."""
    if all(layer.dtype_policy.compute_dtype == "float32" for layer in net.layers):
        return net
    twin = net.__dict__.get("_tfprune_float32_twin")
    if twin is None:
        # A layer's config carries its policy, so each clone is rebuilt with float32 named explicitly.
        twin = keras.models.clone_model(
            net, clone_function=lambda layer: type(layer).from_config({**layer.get_config(), "dtype": "float32"}))
        net.__dict__["_tfprune_float32_twin"] = twin
    twin.set_weights(net.get_weights())  # every call: `net` may have trained since the last one
    return twin


def outputs_probabilities(net: keras.Model) -> bool:
    """Whether `net`'s output is a softmax (a final Softmax layer or softmax activation) rather than logits."""
    last = net.layers[-1] if net.layers else None
    if isinstance(last, keras.layers.Softmax):
        return True
    activation = getattr(last, "activation", None)
    return activation is keras.activations.softmax or getattr(activation, "__name__", "") == "softmax"


# Perturbed copies per forward pass: as many as keep one pass's input under this many values (then the
# activations of one pass stay tens of MB for the small CNNs), a divisor of m so every pass has one shape.
PASS_INPUT_VALUES = 2**18


def copies_per_pass(m: int, batch_shape: Sequence[int]) -> int:
    per_copy = int(np.prod(batch_shape))
    return max(k for k in range(1, m + 1) if m % k == 0 and (k == 1 or k * per_copy <= PASS_INPUT_VALUES))


def _signal_function(net: keras.Model, batch_shape, m: int, eps: float, with_sensitivity: bool):
    """The traced batch function, cached on the model so repeated calls (train, test, dev subsets of one
    model) trace once instead of once per call."""
    cache = net.__dict__.setdefault("_tfprune_signal_functions", {})
    key = (tuple(batch_shape), m, eps, with_sensitivity)
    if key in cache:
        return cache[key]
    batch_size = batch_shape[0]
    spec = tf.TensorSpec(batch_shape, tf.float32)

    ends_in_softmax = outputs_probabilities(net)

    def forward(inputs):
        outputs = tf.cast(net(inputs, training=False), tf.float32)
        # A model ending in softmax gives probabilities; log p are logits up to a per-sample constant.
        return tf.math.log(tf.maximum(outputs, LOG_FLOOR)) if ends_in_softmax else outputs

    # No autograph: nothing here branches on tensors (and a converted function re-reads its source file).
    @tf.function(input_signature=[spec, tf.TensorSpec((2,), tf.int64)], autograph=False)
    def batch_signals(batch, seed):
        logits = forward(batch)
        probs = tf.nn.softmax(logits)
        if not with_sensitivity:
            return logits, probs, tf.fill(tf.shape(probs), float("nan"))
        # Copy j of the batch gets noise direction j: rows j*batch.. of the batch's draw. The copies go through
        # the model `copies` at a time (a graph loop when that is fewer than m): per sample the outputs are
        # bit-identical to one forward pass of all m * batch samples (same kernels) at the same CPU cost, but
        # the activations held at once are `copies` batches', not m (small_cnn on 28x28: ~60 MB, not ~600 MB).
        copies = copies_per_pass(m, batch_shape)
        rows = copies * batch_size
        # One draw for all m copies, so the noise is that of the m * batch tensor earlier versions drew.
        noise = tf.random.stateless_normal([m * batch_size] + list(batch_shape[1:]), seed=seed, dtype=batch.dtype)
        tiled = tf.tile(batch, [copies] + [1] * (len(spec.shape) - 1))
        if copies == m:  # one pass: no loop to trace and run (tiny inputs such as 8x8 digits)
            perturbed = tf.reshape(tf.nn.softmax(forward(tiled + eps * noise)), [m, batch_size, -1])
        else:
            def one_pass(i):
                chunk = tf.nn.softmax(forward(tiled + eps * noise[i * rows:(i + 1) * rows]))
                return tf.reshape(chunk, [copies, batch_size, -1])

            # parallel_iterations=1: one pass's activations alive at a time.
            chunks = tf.map_fn(one_pass, tf.range(m // copies), fn_output_signature=tf.float32,
                               parallel_iterations=1)
            perturbed = tf.reshape(chunks, [m, batch_size, -1])
        sensitivity = tf.reduce_mean(tf.abs(perturbed - probs[None]), axis=0) / eps
        return logits, probs, sensitivity

    cache[key] = batch_signals
    return batch_signals
