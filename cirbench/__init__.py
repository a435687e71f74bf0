"""cirbench: benchmark and evaluation suite for blind compressed image restoration.

    import cirbench
    res = cirbench.evaluate(models=["jpeg"], datasets=["classic5"], qf=[10])   # a Results
    cirbench.score(restored_uint8, target_uint8)                               # {"psnr": ..., ...}
"""

__version__ = "0.1.0"
__all__ = ["__version__", "evaluate", "score", "Results", "register_metric"]


def __getattr__(name: str):
    # Imported on first use: `cirbench --version` and `--help` must not pay for torch and pandas.
    if name in ("evaluate", "score", "Results"):
        from . import api

        return getattr(api, name)
    if name == "register_metric":
        from .metrics import register

        return register
    raise AttributeError(f"module 'cirbench' has no attribute {name!r}")
