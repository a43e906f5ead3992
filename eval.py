"""Evaluate a trained checkpoint on its test split.

    python eval.py ckpt_path=<run dir>/checkpoints/last.ckpt

The model, data and seed come from the checkpoint; the result is written to outputs/eval/<date>_<time>/.
"""

import hydra
from omegaconf import DictConfig

from imgbench.cli import run
from imgbench.run import evaluate, run_task


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    """The Hydra job: evaluate with the composed ``cfg``; returns ``optimized_metric`` for sweepers."""
    return run_task(evaluate, cfg)


if __name__ == "__main__":
    run(main, "eval")
