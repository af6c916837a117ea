"""LeNet-5 as in the ADMM weight-pruning code (Zhang et al., ECCV 2018) that MCMIA builds on.

Kept as in that code: 'valid' 5x5 convolutions with bias, ReLU, 2x2 max-pools with 'same' padding, dropout 0.5
before the last layer. Only the initialisation is the project-wide one (docs/deviations.md), not the original
truncated-normal(0.1) / bias 0.1.
"""
from __future__ import annotations

from tfprune_mia.backend import keras
from tfprune_mia.models.registry import register
from tfprune_mia.models.layers import conv2d, dense
from tfprune_mia.models.resnet import check_image_shape

DROPOUT = 0.5


@register("lenet5", "LeNet-5 of the ECCV'18 ADMM code: conv5x5x20-pool-conv5x5x50-pool-FC500-FC C, ReLU "
                    "(as MCMIA uses it); intended for 28x28x1 (flatten 800), the flatten adapts to other sizes")
def lenet5(input_shape, num_classes) -> keras.Model:
    check_image_shape(input_shape, "lenet5")
    inputs = keras.Input(shape=input_shape, name="input")
    h = inputs
    for index, filters in enumerate((20, 50), start=1):
        h = conv2d(filters, 5, f"conv{index}", padding="valid", use_bias=True)(h)
        h = keras.layers.ReLU(name=f"relu{index}")(h)
        h = keras.layers.MaxPooling2D(2, padding="same", name=f"pool{index}")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = dense(500, "fc1")(h)
    h = keras.layers.ReLU(name="fc1.relu")(h)
    h = keras.layers.Dropout(DROPOUT, name="fc1.dropout")(h)
    logits = dense(num_classes, "classifier")(h)
    return keras.Model(inputs, logits, name="lenet5")
