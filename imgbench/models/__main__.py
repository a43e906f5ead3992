"""``python -m imgbench.models``: every model with its switches, and how to reach timm's and torchvision's.

python -m imgbench.models                          # our models, one line each, and the two hubs
python -m imgbench.models --timm 'convnext*'       # timm's names matching a pattern (--pretrained: with tags)
python -m imgbench.models --torchvision            # torchvision's classification models
"""

from __future__ import annotations

import argparse
import fnmatch
import inspect

from timm import list_models as timm_list_models

from .hub import timm_names, torchvision_names
from .registry import get_model_factory, list_models

DATA_ARGS = ("num_classes", "in_channels", "image_size")  # set from the data, never in a model config
HUBS = ("timm", "torchvision")


def _value(value: object) -> str:
    """A default as it is written on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return f"[{','.join(_value(v) for v in value)}]"
    return f"{value:g}" if isinstance(value, float) else str(value)


def switches(name: str) -> str:
    """The switches of the registered model ``name`` with their defaults (``key=default ...``), from its signature."""
    parts = []
    for p in inspect.signature(get_model_factory(name)).parameters.values():
        if p.name in DATA_ARGS:
            continue
        if p.kind is p.VAR_KEYWORD:
            parts.append("+model.<option>=<value> (the model's own)")
        elif p.default is p.empty:
            parts.append(f"{p.name}=<required>")
        else:
            parts.append(f"{p.name}={_value(p.default)}")
    return " ".join(parts)


def overview() -> str:
    """The models and their switches, then how to use timm's and torchvision's."""
    names = [n for n in list_models() if n not in HUBS]
    width = max(map(len, names))
    lines = ["models (python train.py model=<name> model.<switch>=<value>; the data sets the classes, channels, size):"]
    lines += [f"  {n:<{width}}  {switches(n)}" for n in names]
    lines += [
        f"timm ({len(timm_names())} models): python train.py model=timm model.name=resnet18 [model.pretrained=true] "
        "[+model.drop_path_rate=0.1]; list names: python -m imgbench.models --timm 'convnext*' [--pretrained]",
        f"torchvision ({len(torchvision_names())} models): python train.py model=torchvision "
        "model.name=mobilenet_v3_small [model.pretrained=true]; list names: python -m imgbench.models --torchvision",
        "model.pretrained: true (the default weights, downloaded) | a .safetensors/.pth/.ckpt file",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print the overview, or the timm / torchvision names matching a pattern."""
    parser = argparse.ArgumentParser(prog="python -m imgbench.models", description=__doc__.splitlines()[0])
    hub = parser.add_mutually_exclusive_group()
    hub.add_argument("--timm", nargs="?", const="*", metavar="PATTERN", help="list timm's models matching PATTERN")
    hub.add_argument("--torchvision", nargs="?", const="*", metavar="PATTERN", help="list torchvision's models")
    parser.add_argument("--pretrained", action="store_true", help="with --timm: names with their weight tags")
    args = parser.parse_args(argv)
    if args.timm is not None:
        found = timm_list_models(args.timm, pretrained=args.pretrained)
    elif args.torchvision is not None:
        found = fnmatch.filter(torchvision_names(), args.torchvision)
    else:
        print(overview())
        return
    print("\n".join(found) if found else f"no model matches '{args.timm or args.torchvision}'")


if __name__ == "__main__":
    main()
