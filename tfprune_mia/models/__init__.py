"""Architecture registry: `build_model(name, input_shape, num_classes)` returns a functional keras.Model.

Every builder uses the authors' initialisation (untruncated Xavier-normal, zero bias, BN gamma=1 beta=0) and
PyTorch-equivalent BatchNorm settings (momentum 0.9, epsilon 1e-5), and names its layers so that pruners can
follow conv -> BN -> next-layer chains.
"""
from tfprune_mia.models.registry import MODELS, ModelSpec, build_model, register  # noqa: F401

# Architecture modules register themselves on import.
from tfprune_mia.models import cnn, densenet, fc, lenet, mobilenet, resnet, vgg  # noqa: F401
