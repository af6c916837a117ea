"""Exporting a pruned model (SavedModel, TFLite) and measuring what pruning bought: parameters, FLOPs, and the
gzip-compressed size, the honest size figure for unstructured sparsity (zeros only shrink a file once compressed).
"""
from __future__ import annotations

import gzip
import tempfile
from pathlib import Path
from typing import Dict

import numpy as np

from tfprune_mia.backend import keras, tf
from tfprune_mia.errors import CheckpointError
from tfprune_mia.io import atomic_path
from tfprune_mia.pruning.masks import prunable_kernel


def _spatial_positions(layer) -> int:
    shape = layer.output.shape
    return int(np.prod(shape[1:-1])) if len(shape) > 2 else 1


def model_flops(net: keras.Model) -> Dict[str, int]:
    """Multiply-adds x 2 of every Conv/Dense/depthwise layer: `flops` as computed by a dense kernel, `nonzero_flops`
    counting only nonzero weights (what a sparse kernel could skip to). BN, activations and pooling are ignored."""
    dense = nonzero = 0
    for layer in net.layers:
        variable = prunable_kernel(layer)
        if variable is None:
            continue
        kernel = variable.numpy()
        positions = _spatial_positions(layer)
        dense += 2 * positions * kernel.size
        nonzero += 2 * positions * int(np.count_nonzero(kernel))
    return {"flops": int(dense), "nonzero_flops": int(nonzero)}


def gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def tflite_bytes(net: keras.Model) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(net)
    return converter.convert()


def footprint(net: keras.Model, with_tflite: bool = False) -> Dict:
    """Parameter count, FLOPs and the raw / gzip-compressed size of the model's h5 weights (and TFLite file)."""
    params = int(sum(np.prod(w.shape) for w in net.weights))
    nonzero = int(sum(np.count_nonzero(w.numpy()) for w in net.weights))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.h5"
        net.save_weights(str(path))
        blob = path.read_bytes()
    report = {"params": params, "nonzero_params": nonzero, **model_flops(net), "h5_bytes": len(blob),
              "h5_gzip_bytes": gzip_size(blob)}
    if with_tflite:
        flat = tflite_bytes(net)
        report.update(tflite_bytes=len(flat), tflite_gzip_bytes=gzip_size(flat))
    return report


def export_saved_model(net: keras.Model, path: Path) -> Path:
    """Write a Keras SavedModel directory (plain Keras layers only, so it reloads without custom objects)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net.save(str(path), save_format="tf", include_optimizer=False)
    return path


def load_saved_model(path: Path) -> keras.Model:
    try:
        return keras.models.load_model(str(path), compile=False)
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path} is not a loadable SavedModel ({type(err).__name__}); re-export it") from None


def export_tflite(net: keras.Model, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(tflite_bytes(net))
    return path


class TFLiteModel:
    """A TFLite flatbuffer run batch by batch through the interpreter (used by tests and the latency benchmark)."""

    def __init__(self, model: bytes, num_threads: int = 1):
        self.interpreter = tf.lite.Interpreter(model_content=model, num_threads=num_threads)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self.batch != len(x):
            self.interpreter.resize_tensor_input(self.input["index"], x.shape)
            self.interpreter.allocate_tensors()
            self.batch = len(x)
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])
