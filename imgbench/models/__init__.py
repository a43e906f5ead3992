"""Plain ``nn.Module`` image classifiers and their registry. Nothing here knows about training.

One module per model family, named after its registry names (``keras``, ``single_conv``, ``lenet5``,
``cifar_cnn``, ``alexnet``, ``alexnet_hash``, ``resnet``, ``fastnet``), and :mod:`~imgbench.models.hub` for
timm's and torchvision's models (registry names ``timm`` and ``torchvision``, with ``name=``); shared layers in
:mod:`~imgbench.models.layers`, argument checks in :mod:`~imgbench.models.arguments`, the registry and the one
builder in :mod:`~imgbench.models.registry`, and the one weight loader (with :func:`classifier_prefix` and
:func:`pretrained_stats`) in :mod:`~imgbench.models.weights`; :class:`NormalizedClassifier`
(:mod:`~imgbench.models.deploy`) takes a network with its normalisation to deployment. Importing this package
registers every model; ``python -m imgbench.models`` lists them.
"""

from .alexnet import alexnet, alexnet_tv
from .alexnet_hash import alexnet_hash
from .cifar_cnn import cifar_cnn
from .deploy import NormalizedClassifier
from .fastnet import fastnet
from .hub import timm, torchvision
from .keras import keras_cnn, keras_fcn
from .layers import count_parameters
from .lenet5 import lenet5
from .registry import (
    UnknownModelError,
    build_model,
    create_model,
    get_model_factory,
    is_model_factory,
    list_models,
    model_arguments,
    register_model,
)
from .resnet import resnet18, resnet34
from .single_conv import single_conv
from .weights import classifier_prefix, pretrained_stats

__all__ = [
    "NormalizedClassifier",
    "UnknownModelError",
    "alexnet",
    "alexnet_hash",
    "alexnet_tv",
    "build_model",
    "cifar_cnn",
    "classifier_prefix",
    "count_parameters",
    "create_model",
    "fastnet",
    "get_model_factory",
    "is_model_factory",
    "keras_cnn",
    "keras_fcn",
    "lenet5",
    "list_models",
    "model_arguments",
    "pretrained_stats",
    "register_model",
    "resnet18",
    "resnet34",
    "single_conv",
    "timm",
    "torchvision",
]
