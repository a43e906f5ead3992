"""Evaluate a trained checkpoint on its test split: python eval.py ckpt_path=<run dir>/checkpoints/last.ckpt

The model, data and seed come from the checkpoint; the result is written to outputs/eval/<date>_<time>/.
"""

import sys

import hydra
from omegaconf import DictConfig

from imgbench.cli import precheck, run_task, setup_environment, share_run_dir
from imgbench.config import validate
from imgbench.distributed import is_child


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    from imgbench.run import evaluate
    from imgbench.sweep import objective

    return objective(run_task(evaluate, cfg), cfg.get("optimized_metric") or "test/acc")


if __name__ == "__main__":
    setup_environment()
    if not is_child():  # a DDP process started by rank 0 gets rank 0's checked command line and run directory
        precheck("eval", sys.argv[1:], validate)
        sys.argv[1:] = share_run_dir("eval", sys.argv[1:])  # torchrun / srun: the directory rank 0 created
    main()
