"""Released outputs as a model: ``--models outputs:TEMPLATE`` scores images another program restored.

``NAME=outputs:TEMPLATE`` names the row NAME; without a name the label is ``outputs:`` and the last folder of the
template before its first placeholder (``outputs:fbcnn`` for the example below), which the run.json keeps beside the
template.

TEMPLATE is a path with ``{stem}`` (the ground truth's file name without extension) and optionally
``{dataset}``, ``{qf}``, ``{qf1}`` (double JPEG's first QF), ``{degradation}`` and ``{image}`` (the file name
with extension), e.g. ``outputs:papers/fbcnn/{dataset}/{qf}/{stem}.png``. The outputs go through the same
metric code and records as a model's; a missing file or one of another size is an error naming the file.
Images are read with the evaluation's reader; colour outputs of a gray dataset are scored on their channel
mean, as gray data through an RGB model are.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ImageError
from ..images import read_image
from .restorer import ModelInfo, Restored, Target

__all__ = ["OUTPUTS_PREFIX", "OutputsRestorer", "short_label"]

OUTPUTS_PREFIX = "outputs:"
FIELDS = ("stem", "image", "dataset", "degradation", "qf", "qf1")


class OutputsRestorer:
    """A restorer that reads each output from a file named by a template."""

    wants_target = True

    def __init__(self, template: str):
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        bad = sorted(names - set(FIELDS))
        if bad or not names & {"stem", "image"}:
            raise ConfigError(f"outputs:{template}: the template needs {{stem}} (or {{image}}) and may use only "
                              f"{', '.join('{' + f + '}' for f in FIELDS)}" + (f"; unknown: {bad}" if bad else ""))
        self.template = template
        self.info = ModelInfo(name=short_label(template), channels=0, params=None,
                              description="released outputs read from files", extra={"outputs_template": template})

    def path(self, target: Target) -> Path:
        return Path(self.template.format(stem=Path(target.image).stem, image=target.image, dataset=target.dataset,
                                         degradation=target.degradation, qf=target.qf,
                                         qf1="" if target.qf1 is None else target.qf1)).expanduser()

    def restore(self, img: np.ndarray, qf: int | None = None, *, target: Target) -> Restored:
        path = self.path(target)
        if not path.is_file():
            raise ImageError(f"{path}: output not found for {target.dataset}/{target.image} at QF {target.qf} "
                             f"(template {self.template}); add the file or use --skip-invalid")
        out = read_image(path)
        if img.ndim == 2 and out.ndim == 3:
            out = np.round(out.astype(np.float64).mean(axis=2)).astype(np.uint8)
        if out.shape != img.shape:
            raise ImageError(f"{path}: {_size(out)} but the input is {_size(img)}; outputs must have the input's size")
        return Restored(out)


def short_label(template: str) -> str:
    """``outputs:`` and the last folder before the template's first placeholder: the method's name in the usual
    layouts (``papers/fbcnn/{dataset}/{qf}/{stem}.png`` -> ``outputs:fbcnn``); the whole template when none."""
    parts = Path(template).parts
    first = next((i for i, p in enumerate(parts) if "{" in p), len(parts))
    named = [p for p in parts[:first] if p not in ("/", "~", ".", "..")]
    return OUTPUTS_PREFIX + (named[-1] if named else template)


def _size(a: np.ndarray) -> str:
    return f"{a.shape[1]}x{a.shape[0]}" + (" gray" if a.ndim == 2 else " colour")
