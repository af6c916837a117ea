"""K copies of one small architecture as one Keras model, each copy with its own weights (stacked training).

Layouts, chosen by measurement at one thread (docs/performance.md, "Stacked training"):

- convolutional part: a Python list of K tensors [batch, H, W, C], one per model. Every convolution,
  batch-norm and pooling runs once per model on that model's own tensor, all in one graph. A single grouped
  convolution over K*C channels (or one op over [K*batch, ...]) does the same arithmetic but streams K times
  larger tensors through batch-norm, ReLU and pooling, which fall out of the caches: it was 15-25% slower per
  model than this on 8x8 and 28x28 inputs, and stacking those tensors for batched ops costs a copy each way.
- dense part: [K, batch, features], so a Dense layer is one batched matmul with a [K, in, out] kernel
  (einsum over [batch, K, in] was 1.6x slower), and element-wise layers (ReLU, dropout) are one op.

Every weight of a stacked layer is the K models' weights stacked on a new leading axis, in Keras' weight order.
Supported layers: the plain chains of Dense, Conv2D (no dilation or groups), BatchNormalization (last axis),
ReLU/Activation, MaxPooling2D/AveragePooling2D, Dropout, Flatten and Reshape that columnfc, small_cnn and
lenet5 are made of.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfprune_mia.backend import keras, set_seed, tf
from tfprune_mia.errors import ConfigError
from tfprune_mia.models.registry import build_model


# The stacked layers' loops run over Python lists of models, never over tensors: autograph has nothing to
# convert, and skipping it shortens tracing, which is a large part of a small stack's cost. The wrapper hides
# the signature from Keras, which then passes `training` to every call: each takes it.
_plain_python = tf.autograph.experimental.do_not_convert


def _unstack(variable, count):
    # Unpack's gradient is one Pack; indexing variable[k] K times would sum K full-size StridedSliceGrads.
    return tf.unstack(variable, num=count) if variable is not None else [None] * count


class StackedDense(keras.layers.Layer):
    """K Dense layers side by side: [K, batch, in] -> [K, batch, units] with a [K, in, units] kernel."""

    def __init__(self, num_models: int, units: int, activation=None, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.num_models, self.units, self.use_bias = num_models, units, use_bias
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", (self.num_models, int(input_shape[-1]), self.units),
                                      initializer="zeros")
        self.bias = self.add_weight("bias", (self.num_models, self.units), initializer="zeros") \
            if self.use_bias else None

    @_plain_python
    def call(self, inputs, training=None):
        outputs = tf.matmul(inputs, self.kernel)
        if self.bias is not None:
            outputs = outputs + self.bias[:, None]
        return self.activation(outputs)


class StackedConv2D(keras.layers.Layer):
    """K Conv2D layers, one per model: a list of K [batch, H, W, C] tensors in, a list out; kernel
    [K, kh, kw, C, filters], bias [K, filters]."""

    def __init__(self, num_models: int, filters: int, kernel_size, strides, padding: str, use_bias: bool,
                 activation=None, **kwargs):
        super().__init__(**kwargs)
        self.num_models, self.filters = num_models, filters
        self.kernel_size, self.strides = tuple(kernel_size), tuple(strides)
        self.padding, self.use_bias = padding.upper(), use_bias
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        channels = int(input_shape[0][-1])
        self.kernel = self.add_weight("kernel", (self.num_models, *self.kernel_size, channels, self.filters),
                                      initializer="zeros")
        self.bias = self.add_weight("bias", (self.num_models, self.filters), initializer="zeros") \
            if self.use_bias else None

    @_plain_python
    def call(self, inputs, training=None):
        outputs = []
        for x, kernel, bias in zip(inputs, _unstack(self.kernel, self.num_models),
                                   _unstack(self.bias, self.num_models)):
            y = tf.nn.conv2d(x, kernel, self.strides, self.padding)
            outputs.append(self.activation(y if bias is None else tf.nn.bias_add(y, bias)))
        return outputs


class StackedBatchNorm(keras.layers.Layer):
    """K BatchNormalization layers (last axis), one per model, on a list of K tensors; weights gamma, beta,
    moving mean and moving variance [K, channels], as Keras orders them.

    Keras' own maths: batch mean and biased batch variance normalise the output; the moving averages follow
    `moving = momentum * moving + (1 - momentum) * batch`, where Keras' fused kernel (4-D inputs) feeds in the
    unbiased batch variance and its plain path (2-D inputs) the biased one. Each model here runs the fused
    kernel, so for 2-D inputs its Bessel factor is undone around it.
    """

    def __init__(self, num_models: int, momentum: float, epsilon: float, center: bool = True,
                 scale: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.num_models, self.momentum, self.epsilon = num_models, float(momentum), float(epsilon)
        self.center, self.scale = center, scale

    def build(self, input_shape):
        shape = (self.num_models, int(input_shape[0][-1]))
        self.gamma = self.add_weight("gamma", shape, initializer="ones") if self.scale else None
        self.beta = self.add_weight("beta", shape, initializer="zeros") if self.center else None
        self.moving_mean = self.add_weight("moving_mean", shape, initializer="zeros", trainable=False)
        self.moving_variance = self.add_weight("moving_variance", shape, initializer="ones", trainable=False)

    @_plain_python
    def call(self, inputs, training=None):
        count, channels = self.num_models, self.moving_mean.shape[-1]
        gammas = _unstack(self.gamma, count) if self.scale else [tf.ones([channels])] * count
        betas = _unstack(self.beta, count) if self.center else [tf.zeros([channels])] * count
        means, variances = _unstack(self.moving_mean, count), _unstack(self.moving_variance, count)
        outputs, new_means, new_variances = [], [], []
        for x, gamma, beta, mean, variance in zip(inputs, gammas, betas, means, variances):
            x4 = x if x.shape.rank == 4 else tf.reshape(x, (-1, 1, 1, channels))
            if training:
                n = tf.cast(tf.size(x4) // channels, variance.dtype)
                bessel = n / tf.maximum(n - 1.0, 1.0) if x.shape.rank == 2 else 1.0
                y, new_mean, new_variance = tf.compat.v1.nn.fused_batch_norm(
                    x4, gamma, beta, mean=mean, variance=variance * bessel, epsilon=self.epsilon,
                    is_training=True, exponential_avg_factor=1.0 - self.momentum)
                new_means.append(new_mean)
                new_variances.append(new_variance / bessel)
            else:
                y, _, _ = tf.compat.v1.nn.fused_batch_norm(x4, gamma, beta, mean=mean, variance=variance,
                                                           epsilon=self.epsilon, is_training=False)
            outputs.append(y if x.shape.rank == 4 else tf.reshape(y, tf.shape(x)))
        if training:
            self.moving_mean.assign(tf.stack(new_means))
            self.moving_variance.assign(tf.stack(new_variances))
        return outputs


class PerModel(keras.layers.Layer):
    """A weightless Keras layer (pooling, activation, dropout, reshape) applied to each model's tensor."""

    def __init__(self, layer: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.inner = layer

    @_plain_python
    def call(self, inputs, training=None):
        return [self.inner(x, training=training) for x in inputs]


class ToModels(keras.layers.Layer):
    """[batch, K, ...] (axis 1) or [K, batch, ...] (axis 0) -> the list of K per-model tensors [batch, ...]."""

    def __init__(self, axis: int, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    @_plain_python
    def call(self, inputs, training=None):
        return tf.unstack(inputs, axis=self.axis)


class ToModelMajor(keras.layers.Layer):
    """[batch, K, ...] -> [K, batch, ...], and back (the transpose is its own inverse)."""

    @_plain_python
    def call(self, inputs, training=None):
        return tf.transpose(inputs, (1, 0, *range(2, inputs.shape.rank)))


class ModelMajorReshape(keras.layers.Layer):
    """Keras' Reshape of every model at once: [K, batch, ...] -> [K, batch, *target_shape]."""

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        self.target_shape = tuple(target_shape)

    @_plain_python
    def call(self, inputs, training=None):
        return tf.reshape(inputs, (inputs.shape[0], -1, *self.target_shape))


class StackFlat(keras.layers.Layer):
    """The list of K per-model tensors -> [K, batch, features], each flattened in Flatten's order."""

    @_plain_python
    def call(self, inputs, training=None):
        return tf.stack([tf.reshape(x, (-1, int(np.prod(x.shape[1:])))) for x in inputs])


def _chain(template: keras.Model) -> List[keras.layers.Layer]:
    layers = template.layers
    for previous, layer in zip(layers, layers[1:]):
        inbound = [node.inbound_layers for node in layer._inbound_nodes]
        if len(inbound) != 1 or inbound[0] is not previous:
            raise ConfigError(f"{template.name}: layer {layer.name} does not follow {previous.name} alone; "
                              "batched training supports plain layer chains (columnfc, small_cnn, lenet5); "
                              "train this architecture with fit_classifier")
    return layers


def _check(condition: bool, layer: keras.layers.Layer, what: str) -> None:
    if not condition:
        raise ConfigError(f"{layer.name}: {what} is not supported in batched training; train this architecture "
                          "with fit_classifier")


def _stacked_layer(layer: keras.layers.Layer, config: dict, K: int, listed: bool):
    """(the stacked counterpart of `layer`, the layout it takes: "list" or "model_major"), or (None, layout)
    for a layer that is the identity there."""
    regularised = any(getattr(layer, name, None) for name in ("kernel_regularizer", "bias_regularizer",
                                                               "gamma_regularizer", "beta_regularizer"))
    _check(not regularised, layer, "a layer with weight regularisers")
    if type(layer) is keras.layers.Dense:
        _check(len(layer.input_shape) == 2, layer, "Dense on an unflattened tensor")
        return StackedDense(K, layer.units, layer.activation, layer.use_bias, name=layer.name), "model_major"
    if type(layer) is keras.layers.Conv2D:
        _check(tuple(config["dilation_rate"]) == (1, 1) and config["groups"] == 1
               and config["data_format"] == "channels_last", layer, "a dilated, grouped or channels-first Conv2D")
        return StackedConv2D(K, layer.filters, layer.kernel_size, layer.strides, layer.padding, layer.use_bias,
                             layer.activation, name=layer.name), "list"
    if isinstance(layer, keras.layers.BatchNormalization):
        rank = len(layer.input_shape)
        _check(list(layer.axis) == [rank - 1] and not config.get("renorm") and not config.get("virtual_batch_size")
               and rank in (2, 4), layer, "BatchNormalization other than over the last axis of a 2-D/4-D tensor")
        return StackedBatchNorm(K, layer.momentum, layer.epsilon, layer.center, layer.scale,
                                name=layer.name), "list"
    if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        return PerModel(type(layer).from_config(config), name=layer.name), "list"
    if isinstance(layer, keras.layers.Reshape):
        if listed:
            return PerModel(type(layer).from_config(config), name=layer.name), "list"
        return ModelMajorReshape(layer.target_shape, name=layer.name), "model_major"
    if isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)) or type(layer) is keras.layers.Dropout:
        _check(config.get("noise_shape") is None, layer, "Dropout with a noise_shape")
        inner = type(layer).from_config(config)
        return (PerModel(inner, name=layer.name), "list") if listed else (inner, "model_major")
    if isinstance(layer, keras.layers.Flatten):
        if len(layer.input_shape) == 2:
            return None, "model_major"
        if listed:
            return StackFlat(name=layer.name), "list"
        return ModelMajorReshape((int(np.prod(layer.input_shape[1:])),), name=layer.name), "model_major"
    raise ConfigError(f"layer {layer.name} ({type(layer).__name__}) is not supported in batched training; train "
                      "this architecture with fit_classifier")


def _layout_change(layout: str, wanted: str, name: str) -> Optional[keras.layers.Layer]:
    """The layer taking h from `layout` ("input" [batch, K, ...], "list" or "model_major" [K, batch, ...]) to
    `wanted`, or None if it is already there."""
    if layout == wanted:
        return None
    if wanted == "list":
        return ToModels(axis=1 if layout == "input" else 0, name=f"{name}.to_models")
    if layout == "input":
        return ToModelMajor(name=f"{name}.to_model_major")
    return StackFlat(name=f"{name}.stack")


class StackedChain(keras.Model):
    """The stacked layers applied in order: [batch, K, *shape] -> logits [batch, K, classes].

    A subclassed model rather than a functional one: functional construction runs every layer symbolically
    once, which for K per-model op copies costs more than training a small model for several epochs."""

    def __init__(self, layers: Sequence[keras.layers.Layer], **kwargs):
        super().__init__(**kwargs)
        self.chain = list(layers)

    @_plain_python
    def call(self, inputs, training=None):
        h = inputs
        for layer in self.chain:
            h = layer(h, training=training)
        return h


def build_stacked(template: keras.Model, num_models: int) -> Tuple[keras.Model, List[str]]:
    """A model computing `num_models` copies of the chain `template` at once: input [batch, K, *shape],
    logits [batch, K, classes]; plus the names of the layers that have weights (in the template and the
    stacked model alike, each stacked weight being the K models' weights on a new leading axis)."""
    K = num_models
    layers = _chain(template)
    chain, layout, weighted = [], "input", []
    for layer in layers[1:]:
        stacked, wanted = _stacked_layer(layer, layer.get_config(), K, layout == "list")
        if stacked is None:
            continue
        change = _layout_change(layout, wanted, layer.name)
        chain.extend([change, stacked] if change is not None else [stacked])
        # StackFlat takes the list and leaves [K, batch, features]
        layout = "model_major" if isinstance(stacked, StackFlat) else wanted
        if layer.weights:
            weighted.append(layer.name)
    _check(layout == "model_major" and type(layers[-1]) is keras.layers.Dense, layers[-1],
           "logits from a layer other than Dense")
    model = StackedChain([*chain, ToModelMajor(name="to_batch_major")], name=f"stacked_{template.name}")
    model(tf.zeros((1, K, *template.input_shape[1:])), training=False)  # creates the weights
    return model, weighted


def unsupported_reason(architecture: str, input_shape, num_classes: int) -> Optional[str]:
    """Why `architecture` cannot be trained stacked (None: it can), found by building it once."""
    try:
        build_stacked(build_model(architecture, tuple(input_shape), int(num_classes)), 1)
    except ConfigError as err:
        return str(err)
    return None


class StackedModels:
    """K models of one architecture as one stacked model, with the weight mapping both ways."""

    def __init__(self, architecture: str, input_shape, num_classes: int, seeds: Sequence[int]):
        self.architecture, self.input_shape, self.num_classes = architecture, tuple(input_shape), int(num_classes)
        self.num_models = len(seeds)
        members = []
        for seed in seeds:  # the initialisation one-by-one training gives each model
            set_seed(int(seed))
            members.append(build_model(architecture, self.input_shape, self.num_classes))
        # Kept to hand the trained weights back in: building a Keras model costs more than a small model's epoch.
        self.members = members
        self.template = members[0]
        self.model, self.weighted = build_stacked(self.template, self.num_models)
        self.set_members([self._member_weights(m) for m in members])

    @staticmethod
    def _member_weights(net: keras.Model) -> Dict[str, List[np.ndarray]]:
        return {layer.name: layer.get_weights() for layer in net.layers if layer.weights}

    def set_members(self, members: Sequence[Dict[str, List[np.ndarray]]]) -> None:
        for name in self.weighted:
            parts = zip(*[member[name] for member in members])
            self.model.get_layer(name).set_weights([np.stack(part) for part in parts])

    def stacked_weights(self) -> Dict[str, List[np.ndarray]]:
        return {name: self.model.get_layer(name).get_weights() for name in self.weighted}

    def member_weights(self, k: int, stacked: Optional[Dict[str, List[np.ndarray]]] = None
                       ) -> Dict[str, List[np.ndarray]]:
        """Model k's weights, layer name -> the layer's weight list in the original architecture (taken from
        `stacked`, a stacked_weights() read, when given: one read serves several models)."""
        stacked = stacked or self.stacked_weights()
        return {name: [w[k] for w in weights] for name, weights in stacked.items()}

    def extract(self, k: int, weights: Optional[Dict[str, List[np.ndarray]]] = None) -> keras.Model:
        """Model k with its current weights (or `weights`) as an ordinary Keras model of the original
        architecture: the model k was initialised from, so each call returns the same object."""
        net = self.members[k]
        for name, values in (weights or self.member_weights(k)).items():
            net.get_layer(name).set_weights(values)
        return net
