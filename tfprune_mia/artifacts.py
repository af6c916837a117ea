"""The deployed artefact as the attacked model: what ships is often not the Keras model but a TFLite file, possibly
post-training quantised, and its membership leakage can differ ("Bits for privacy", 2025: 4-bit leaks like full
precision, 2-bit cuts LiRA's low-FPR TPR at an accuracy cost).

An artefact kind converts a Keras model to the bytes that ship; `artifact_signals` computes the membership signals
by running those bytes through the TFLite interpreter, exactly as `compute_signals` does for Keras (same batches,
zero padding and seeded perturbation noise), so a float export's signals equal the Keras model's to float
tolerance and any difference in a quantised export's rows is the quantisation's.

- keras: the model itself (no conversion).
- tflite: float32 TFLite.
- tflite_int8: dynamic-range quantisation (int8 weights, activations quantised on the fly per batch, so outputs
  depend slightly on the batch a sample is scored in, as on the device).
- tflite_fp16: float16 weights (computed in float32 on CPU).
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np

from tfprune_mia.attacks.signals import LOG_FLOOR, SignalConfig, Signals, outputs_probabilities
from tfprune_mia.backend import keras, tf
from tfprune_mia.errors import ConfigError
from tfprune_mia.io import atomic_path, read_json, write_json
from tfprune_mia.pruning.export import TFLiteModel, gzip_size
from tfprune_mia.registry import Registry


@dataclasses.dataclass(frozen=True)
class ArtifactKind:
    name: str
    convert: Callable[[keras.Model], bytes]  # Keras model -> the shipped bytes
    interpreted: bool = True  # False: signals come from the Keras model itself


ARTIFACTS: Registry[ArtifactKind] = Registry("artifact")


def _tflite(net: keras.Model, configure=None) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(net)
    if configure is not None:
        configure(converter)
    return converter.convert()


def _dynamic_range(converter) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]


def _float16(converter) -> None:
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def _h5_bytes(net: keras.Model) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.h5"
        net.save(str(path), save_format="h5", include_optimizer=False)
        return path.read_bytes()


for _kind in (ArtifactKind("keras", _h5_bytes, interpreted=False), ArtifactKind("tflite", _tflite),
              ArtifactKind("tflite_int8", lambda net: _tflite(net, _dynamic_range)),
              ArtifactKind("tflite_fp16", lambda net: _tflite(net, _float16))):
    ARTIFACTS.register(_kind.name)(_kind)


def convert(net: keras.Model, kind: str) -> bytes:
    """The bytes that ship for artefact `kind` (for keras: the h5 model file, for its size)."""
    return ARTIFACTS.get(kind).convert(net)


def artifact_facts(data: bytes, kind: str) -> Dict:
    """What the artefact costs to ship: its raw and gzip-compressed size."""
    return {"artifact": kind, "artifact_bytes": len(data), "artifact_gzip_bytes": gzip_size(data)}


def artifact_signals(data: bytes, ends_in_softmax: bool, x: np.ndarray, y: np.ndarray,
                     config: SignalConfig = SignalConfig(), with_sensitivity: bool = True) -> Signals:
    """`compute_signals` of a TFLite flatbuffer: posteriors, logits and sensitivities through the interpreter.
    ends_in_softmax: whether the converted model outputs probabilities (`outputs_probabilities(net)`)."""
    m, eps = config.num_perturbations, config.epsilon
    x = np.asarray(x, np.float32)
    if len(x) == 0:
        raise ConfigError("artefact signals need at least one sample; pass a non-empty split")
    # One interpreter per input shape (the batch and its m perturbed copies): resizing reallocates every call.
    plain, tiled_model = TFLiteModel(data), TFLiteModel(data)
    batch_size = max(1, min(config.batch_size, len(x)))

    def forward(model: TFLiteModel, inputs: np.ndarray) -> np.ndarray:
        outputs = model(inputs).astype(np.float64)
        return np.log(np.maximum(outputs, LOG_FLOOR)) if ends_in_softmax else outputs

    outputs = ([], [], [])
    for index, start in enumerate(range(0, len(x), batch_size)):
        batch = x[start:start + batch_size]
        real = len(batch)
        if real < batch_size:  # the same zero padding as compute_signals, so quantised batches match too
            batch = np.concatenate([batch, np.zeros((batch_size - real,) + x.shape[1:], np.float32)])
        logits = forward(plain, batch)
        probs = _softmax(logits)
        if with_sensitivity:
            tiled = np.tile(batch, [m] + [1] * (batch.ndim - 1))
            # The very noise compute_signals draws: a stateless generator keyed by (noise_seed, batch index).
            seed = tf.constant([config.noise_seed, index], tf.int64)
            noise = tf.random.stateless_normal(tiled.shape, seed=seed, dtype=tf.float32).numpy()
            perturbed = _softmax(forward(tiled_model, (tiled + eps * noise).astype(np.float32))).reshape(m, batch_size, -1)
            sensitivity = np.mean(np.abs(perturbed - probs[None]), axis=0) / eps
        else:
            sensitivity = np.full(probs.shape, np.nan)
        for store, value in zip(outputs, (logits, probs, sensitivity)):
            store.append(value[:real].astype(np.float32))
    logits, posteriors, sensitivity = (np.concatenate(o) for o in outputs)
    return Signals(posteriors, sensitivity, np.asarray(y, np.int64), logits)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def cached_artifact(directory: Path, kind: str, load_net: Callable[[], keras.Model]) -> Tuple[bytes, Dict]:
    """The artefact of the model stored in `directory`, converted once and kept beside it (its json, written
    last, marks it complete): (bytes, facts with sizes and whether it outputs probabilities)."""
    path, meta_path = directory / f"artifact-{kind}.bin", directory / f"artifact-{kind}.json"
    if meta_path.exists():
        return path.read_bytes(), read_json(meta_path)
    net = load_net()
    data = convert(net, kind)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    facts = {**artifact_facts(data, kind), "ends_in_softmax": outputs_probabilities(net)}
    write_json(meta_path, facts)
    return data, facts
