"""Training: PromptCIR's two-stage recipe (config, data, loop, log, validation), resumable, DDP under
torchrun (``torchrun --nproc_per_node=N -m cirbench train --config ...``)."""

from .config import TrainConfig, config_from_dict, load_config, override_steps
from .loop import train

__all__ = ["train", "TrainConfig", "load_config", "config_from_dict", "override_steps"]
