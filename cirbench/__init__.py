"""cirbench: benchmark and evaluation suite for blind compressed image restoration."""

__version__ = "0.1.0"
