"""Architecture registry: `build_model(name, input_shape, num_classes)` returns a functional keras.Model.

Every builder uses the authors' initialisation (untruncated Xavier-normal, zero bias, BN gamma=1 beta=0) and
PyTorch-equivalent BatchNorm settings (momentum 0.9, epsilon 1e-5), and names its layers so that pruners can
follow conv -> BN -> next-layer chains.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Tuple

from tfprune_mia.backend import keras
from tfprune_mia.registry import Registry


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    builder: Callable[[Tuple[int, ...], int], keras.Model]
    description: str


MODELS: Registry[ModelSpec] = Registry("model")


def register(name: str, description: str):
    def decorator(builder):
        MODELS.register(name)(ModelSpec(builder, description))
        return builder
    return decorator


def build_model(name: str, input_shape: Tuple[int, ...], num_classes: int) -> keras.Model:
    return MODELS.get(name).builder(tuple(input_shape), int(num_classes))
