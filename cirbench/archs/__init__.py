"""Network architectures (networks only) and their names in the one registry (:class:`cirbench.registry.Registry`).

``build_arch(name, **kwargs)`` is how model cards and training configs make a network. A name is cirbench's own
(``promptcir``, ``promptir``, ``fbcnn``), one added with :func:`register`, an installed package's entry point in
the ``cirbench.models`` group::

    [project.entry-points."cirbench.models"]
    mynet = "mypkg.nets:MyNet"

or, where the user typed it (``--models``), an import path ``module:attr``. A data file (a card, a protocol, a
training config) may name only the first three: ``allow_code=False``.
"""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from .fbcnn import FBCNN
from .promptcir import PromptCIR
from .promptir import PromptIR

__all__ = ["FBCNN", "PromptCIR", "PromptIR", "REGISTRY", "register", "resolve", "build_arch", "import_spec"]

REGISTRY = Registry("architecture", "cirbench.models")
for _name, _cls in (("promptcir", PromptCIR), ("promptir", PromptIR), ("fbcnn", FBCNN)):
    REGISTRY.register(_name, _cls)

register = REGISTRY.register
resolve = REGISTRY.resolve
import_spec = REGISTRY.import_spec


def build_arch(name: str, *, allow_code: bool = False, where: str = "", **kwargs) -> Any:
    """Instantiate an architecture by name with the given keyword arguments (``module:attr`` only with
    ``allow_code``: a name from a data file never imports code)."""
    return REGISTRY.build(name, allow_code=allow_code, where=where, **kwargs)
