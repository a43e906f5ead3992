"""Plain ``nn.Module`` image classifiers and their registry. Nothing here knows about training."""

from .alexnet import alexnet, alexnet_hash, alexnet_tv
from .fastnet import fastnet
from .keras import keras_cnn, keras_fcn, single_conv
from .layers import count_parameters
from .lenet import cifar_cnn, lenet5
from .registry import UnknownModelError, create_model, get_model_factory, list_models, register_model
from .resnet import resnet18, resnet34

__all__ = [
    "UnknownModelError",
    "alexnet",
    "alexnet_hash",
    "alexnet_tv",
    "cifar_cnn",
    "count_parameters",
    "create_model",
    "fastnet",
    "get_model_factory",
    "keras_cnn",
    "keras_fcn",
    "lenet5",
    "list_models",
    "register_model",
    "resnet18",
    "resnet34",
    "single_conv",
]
