"""A user metric for ``cirbench run --metrics psnr,examples.my_metrics:mae`` (see README, "Your own metric").

A metric is a plain function ``fn(restored, target) -> float`` on one image's uint8 arrays: HxW in the ``y`` and
``gray`` spaces, HxWx3 in ``rgb``. Optional attributes tell reports how to read it.
"""

import numpy as np


def mae(restored: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute error on 0..255."""
    return float(np.abs(restored.astype(np.float64) - target.astype(np.float64)).mean())


mae.higher_is_better = False  # tables mark the lowest value best; regress, plots and CIs read the direction
mae.unit = ""
mae.decimals = 3
mae.spaces = ("y", "rgb", "gray")  # default: y, y-full, rgb, gray (y-float is float64, so opt in to it)
