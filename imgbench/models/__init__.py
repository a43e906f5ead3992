"""Plain ``nn.Module`` image classifiers and their registry. Nothing here knows about training."""

from .alexnet import alexnet, alexnet_hash, alexnet_tv
from .keras import keras_cnn, keras_fcn
from .layers import count_parameters
from .registry import UnknownModelError, create_model, get_model_factory, list_models, register_model

__all__ = [
    "UnknownModelError",
    "alexnet",
    "alexnet_hash",
    "alexnet_tv",
    "count_parameters",
    "create_model",
    "get_model_factory",
    "keras_cnn",
    "keras_fcn",
    "list_models",
    "register_model",
]
