"""Plain ``nn.Module`` image classifiers and their registry. Nothing here knows about training."""

from .keras import keras_cnn, keras_fcn
from .layers import count_parameters
from .registry import UnknownModelError, create_model, get_model_factory, list_models, register_model
from .resnet import resnet18, resnet34

__all__ = [
    "UnknownModelError",
    "count_parameters",
    "create_model",
    "get_model_factory",
    "keras_cnn",
    "keras_fcn",
    "list_models",
    "register_model",
    "resnet18",
    "resnet34",
]
