"""Models: exact parameter counts from the papers, the registry, and config/registry name agreement."""

from __future__ import annotations

import pytest
import torch
import yaml

from imgbench.cli import CONF_DIR
from imgbench.models import UnknownModelError, count_parameters, create_model, list_models
from imgbench.models.registry import get_model_factory


@pytest.mark.parametrize(
    ("name", "in_channels", "size", "params"),
    [
        ("keras_cnn", 1, 28, 98_442),
        ("keras_fcn", 1, 28, 74_362),
        ("keras_cnn", 3, 32, 553_514),
        ("keras_fcn", 3, 32, 79_184),
    ],
)
def test_study_e_parameter_counts(name, in_channels, size, params):
    model = create_model(name, num_classes=10, in_channels=in_channels, image_size=size)
    assert count_parameters(model) == params
    out = model(torch.zeros(3, in_channels, size, size))
    assert out.shape == (3, 10)


def test_keras_init_is_glorot_uniform_with_zero_biases():
    keras = create_model("keras_cnn", init="keras")
    torch_init = create_model("keras_cnn", init="torch")
    dense = keras.classifier[1]
    bound = (6 / (dense.in_features + dense.out_features)) ** 0.5
    assert dense.weight.abs().max() <= bound
    assert torch.count_nonzero(dense.bias) == 0
    assert torch.count_nonzero(torch_init.classifier[1].bias) > 0


def test_unknown_model_is_one_line_with_suggestion():
    with pytest.raises(UnknownModelError) as e:
        create_model("keras_cnnn")
    msg = str(e.value)
    assert "\n" not in msg and "did you mean 'keras_cnn'" in msg and "keras_fcn" in msg


def test_every_model_config_names_its_registry_factory():
    """One name for one thing: conf/model/<name>.yaml -> _target_ imgbench.models.<name> -> registry <name>."""
    configs = sorted(p for p in (CONF_DIR / "model").glob("*.yaml") if not p.stem.startswith("_"))
    assert configs
    for path in configs:
        target = yaml.safe_load(path.read_text())["_target_"]
        assert target == f"imgbench.models.{path.stem}", path
        assert get_model_factory(path.stem).__name__ == path.stem
    assert {p.stem for p in configs} == set(list_models())
