"""Trained models on disk: model.h5 (the full Keras model) plus meta.json, written last as the completion marker."""
from __future__ import annotations

from pathlib import Path
from typing import Dict

from tfprune_mia import faults
from tfprune_mia.backend import keras
from tfprune_mia.errors import CheckpointError
from tfprune_mia.io import atomic_path, read_json, write_json
from tfprune_mia.pipeline.config import FORMAT_VERSION


def load_model_safely(path: Path, what: str = "model", fix: str = "re-create it") -> keras.Model:
    """Load a full Keras model in safe mode: a model file is data and must not run code (an h5 file can carry
    marshalled Lambda bytecode; load_model's own safe_mode= covers only the .keras format)."""
    try:
        with keras.src.saving.serialization_lib.SafeModeScope(True):
            return keras.models.load_model(str(path), compile=False)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise CheckpointError(f"{what} {path} is missing, corrupt or unsafe ({reason}); {fix}") from None


class ModelStore:
    def __init__(self, directory: Path):
        self.directory = Path(directory)

    @property
    def meta_path(self) -> Path:
        return self.directory / "meta.json"

    @property
    def model_path(self) -> Path:
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
        return load_model_safely(self.model_path, "cached model",
                                 f"delete {self.directory} and re-run to retrain it")

    def save(self, net: keras.Model, meta: Dict) -> None:
        with atomic_path(self.model_path) as tmp:
            net.save(str(tmp), save_format="h5")
        faults.point("stage.model_saved")
        write_json(self.meta_path, {"format_version": FORMAT_VERSION, **meta})
