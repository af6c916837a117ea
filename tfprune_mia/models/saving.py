"""Loading saved Keras models that may come from anywhere (a run directory, a user's file) without running code."""
from __future__ import annotations

from pathlib import Path

from tfprune_mia.backend import keras
from tfprune_mia.errors import CheckpointError


def load_model_safely(path: Path, what: str = "model", fix: str = "re-create it") -> keras.Model:
    """Load a full Keras model in safe mode: a model file is data and must not run code (an h5 file can carry
    marshalled Lambda bytecode; load_model's own safe_mode= covers only the .keras format)."""
    try:
        with keras.src.saving.serialization_lib.SafeModeScope(True):
            return keras.models.load_model(str(path), compile=False)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise CheckpointError(f"{what} {path} is missing, corrupt or unsafe ({reason}); {fix}") from None
