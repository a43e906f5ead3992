"""Train an image classifier: python train.py [model=...] [data=...] [optimizer=...] [key=value ...]

See README.md; `python train.py --help` lists the config groups and their options.
"""

import sys

import hydra
from omegaconf import DictConfig

from imgbench.cli import fail, precheck, resolve_resume, run_task, setup_environment, share_run_dir
from imgbench.config import validate
from imgbench.distributed import is_child
from imgbench.errors import UserError


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from imgbench.run import train
    from imgbench.sweep import objective

    return objective(run_task(train, cfg), cfg.get("optimized_metric") or "test/acc")


if __name__ == "__main__":
    setup_environment()
    if not is_child():  # a DDP process started by rank 0 gets rank 0's checked command line and run directory
        try:
            sys.argv[1:] = resolve_resume(sys.argv[1:])
        except UserError as e:
            fail(e)
        precheck("train", sys.argv[1:], validate)
        sys.argv[1:] = share_run_dir("train", sys.argv[1:])  # torchrun / srun: the directory rank 0 created
    main()
