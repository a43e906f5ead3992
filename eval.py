"""Evaluate a trained checkpoint on its test split: python eval.py ckpt_path=<run dir>/checkpoints/last.ckpt

The model, data and seed come from the checkpoint; the result is written to outputs/eval/<date>_<time>/.
"""

import sys

import hydra
from omegaconf import DictConfig

from imgbench.cli import precheck, run_task, setup_environment
from imgbench.config import validate


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    from imgbench.run import evaluate
    from imgbench.sweep import objective

    return objective(run_task(evaluate, cfg), cfg.get("optimized_metric") or "test/acc")


if __name__ == "__main__":
    setup_environment()
    precheck("eval", sys.argv[1:], validate)
    main()
