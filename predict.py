"""Predict the classes of images with a trained run.

    python predict.py ckpt_path=<run dir or .ckpt> input=<image | folder | 'glob' | .zip/.tar.gz>

The model and its preprocessing come from the checkpoint; predictions.csv (and metrics.json) are written to
outputs/predict/<date>_<time>/.
"""

import hydra
from omegaconf import DictConfig

from imgbench.cli import run
from imgbench.predict import predict
from imgbench.run import run_task


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> float | None:
    """The Hydra job: predict with the composed ``cfg``."""
    return run_task(predict, cfg)


if __name__ == "__main__":
    run(main, "predict")
