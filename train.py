"""Train an image classifier.

    python train.py [model=...] [data=...] [optimizer=...] [key=value ...]

See README.md; `python train.py --help` lists the config groups and their options.
"""

import hydra
from omegaconf import DictConfig

from imgbench.cli import run
from imgbench.run import run_task, train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """The Hydra job: train with the composed ``cfg``; returns ``optimized_metric`` for sweepers."""
    return run_task(train, cfg)


if __name__ == "__main__":
    run(main, "train")
