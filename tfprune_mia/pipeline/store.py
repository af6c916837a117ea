"""Trained models on disk: model.h5 (the full Keras model) plus meta.json, written last as the completion marker.

The directory may be local or on any `tf.io.gfile` file system: Keras writes h5 only to a real file, so the model is
saved to a local temporary file and uploaded (io.atomic_path), and read back through a local copy."""
from __future__ import annotations

import os
from typing import Dict

from tfprune_mia import faults, fs
from tfprune_mia.backend import keras
from tfprune_mia.errors import CheckpointError
from tfprune_mia.io import atomic_path, read_json, write_json
from tfprune_mia.models.saving import load_model_safely
from tfprune_mia.pipeline.config import FORMAT_VERSION


class ModelStore:
    def __init__(self, directory: os.PathLike):
        self.directory = fs.path(directory)

    @property
    def meta_path(self) -> fs.AnyPath:
        return self.directory / "meta.json"

    @property
    def model_path(self) -> fs.AnyPath:
        return self.directory / "model.h5"

    def exists(self) -> bool:
        return self.meta_path.exists()

    def meta(self) -> Dict:
        meta = read_json(self.meta_path)
        if meta.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{self.directory} was written by an incompatible tfprune_mia version "
                                  f"(format {meta.get('format_version')}, expected {FORMAT_VERSION}); "
                                  "use another --run_root or delete that directory")
        return meta

    def load(self) -> keras.Model:
        self.meta()
        with fs.local_copy(self.model_path) as local:
            return load_model_safely(local, "cached model",
                                     f"delete {self.directory} and re-run to retrain it")

    def save(self, net: keras.Model, meta: Dict) -> None:
        with atomic_path(self.model_path) as tmp:
            net.save(str(tmp), save_format="h5")
        faults.point("stage.model_saved")
        write_json(self.meta_path, {"format_version": FORMAT_VERSION, **meta})
