"""Export a trained run as one deployable file, ONNX or TorchScript, its input normalisation inside.

    python export.py ckpt_path=<run dir>/checkpoints/last.ckpt [format=onnx|torchscript]

The model takes float32 images in [0, 1], shape (N, C, H, W), and returns logits; model.json beside it names the
classes, input size, normalisation and source run. Written to outputs/export/<date>_<time>/.
"""

import hydra
from omegaconf import DictConfig

from imgbench.cli import run
from imgbench.export import export
from imgbench.run import run_task


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> float | None:
    """The Hydra job: export with the composed ``cfg``."""
    return run_task(export, cfg)


if __name__ == "__main__":
    run(main, "export")
