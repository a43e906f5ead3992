"""Models: exact parameter counts from the papers, the registry, and config/registry name agreement."""

from __future__ import annotations

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from imgbench.errors import ArgumentError
from imgbench.models import UnknownModelError, count_parameters, create_model, list_models
from imgbench.models.registry import get_model_factory, model_arguments
from imgbench.paths import CONF_DIR

DATA_ARGUMENTS = {"num_classes", "in_channels", "image_size"}
# timm's and torchvision's models (imgbench/models/hub.py): a required name, and open-ended (the model's own options)
HUB_MODELS = {"timm": "resnet18", "torchvision": "resnet18"}


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


def model_defaults(name: str) -> dict:
    """The switches of conf/model/<name>.yaml: no ``_target_``, Hydra ``defaults`` or values set by interpolation."""
    cfg = OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml")
    keys = [k for k in cfg if k not in ("_target_", "defaults") and not OmegaConf.is_interpolation(cfg, k)]
    return {k: OmegaConf.to_container(cfg, resolve=False)[k] for k in keys}


def bad_value(value: object) -> object:
    """A value of the same kind as ``value`` that no switch accepts."""
    if isinstance(value, str):
        return "not_a_choice"
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, int | float):
        return -1
    return None


@pytest.mark.parametrize("name", list_models())
def test_model_arguments_come_from_the_model_class(name):
    """model_arguments names what the factory takes (its signature) without repeating it in the factory."""
    accepted, open_ended = model_arguments(name)
    assert open_ended == (name in HUB_MODELS) and accepted >= DATA_ARGUMENTS
    assert set(model_defaults(name)) <= accepted
    hub_name = {"name": HUB_MODELS[name]} if name in HUB_MODELS else {}
    with pytest.raises(TypeError, match="not_a_switch"), torch.device("meta"):
        create_model(name, not_a_switch=1, **hub_name)


@pytest.mark.parametrize(("in_channels", "size"), [(3, (224, 224)), (1, (28, 28))])
@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_on_meta_and_names_bad_switches(name, in_channels, size):
    """The config layer's check: each model builds on the meta device with its config's defaults (no memory, no
    file read), and a bad value of each switch raises ArgumentError naming that switch."""
    defaults = model_defaults(name)
    if name in HUB_MODELS:  # name: ??? in the config
        defaults["name"] = HUB_MODELS[name]
    data = {"num_classes": 10, "in_channels": in_channels, "image_size": size}
    if name == "alexnet_tv" and min(size) < 63:  # torchvision's layout needs a resize on small images
        with pytest.raises(ArgumentError) as e, torch.device("meta"):
            create_model(name, **data, **defaults)
        assert e.value.argument == "image_size"
        defaults["resize_to"] = 224
    with torch.device("meta"):
        model = create_model(name, **data, **defaults)
    assert all(p.is_meta for p in model.parameters()) and count_parameters(model) > 0
    for key, value in defaults.items():
        bad = bad_value(value)
        if bad is None:
            continue
        with pytest.raises(ArgumentError) as e, torch.device("meta"):
            create_model(name, **data, **{**defaults, key: bad})
        assert e.value.argument == key, (key, bad, str(e.value))
        assert "\n" not in str(e.value)
