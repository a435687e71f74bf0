"""Reports from records alone: aggregation, the table model, renderers, plots, published rows, statistics
and the regression comparison. Nothing here imports the zoo, the architectures or training."""

from .aggregate import aggregate, comparisons, load, select_space
from .render import FORMATS, render

__all__ = ["FORMATS", "render", "aggregate", "comparisons", "load", "select_space"]
