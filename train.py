"""Train an image classifier: python train.py [model=...] [data=...] [optimizer=...] [key=value ...]

See README.md; `python train.py --help` lists the config groups and their options.
"""

import sys

import hydra
from omegaconf import DictConfig

from imgbench.cli import precheck, run_task, setup_environment
from imgbench.config import validate


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from imgbench.run import train

    result = run_task(train, cfg)
    return result["metrics"].get("test/acc") if result else None


if __name__ == "__main__":
    setup_environment()
    precheck("train", sys.argv[1:], validate)
    main()
