"""One safe checkpoint loader for every model in cirbench.

Pickle checkpoints are only ever read with ``torch.load(..., weights_only=True)``: a file that needs
arbitrary code to unpickle is refused rather than executed. Common training-framework wrappers
(BasicSR ``params``/``params_ema``, Lightning ``state_dict``, ``model``/``net``) and prefixes
(``module.`` from DataParallel, ``_orig_mod.`` from ``torch.compile``, ``net.`` from Lightning) are
removed, and a key/shape mismatch is reported as a readable :class:`CheckpointError`.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from ..files import atomic_write, sha256_file

__all__ = [
    "CheckpointError",
    "incomplete",
    "load_into",
    "save_state_dict",
    "unwrap_state_dict",
]

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
# Checked in this order, so EMA weights win over raw weights when a file holds both.
WRAPPER_KEYS = ("params_ema", "ema", "params", "state_dict", "model_state_dict", "model", "net", "network")
PREFIXES = ("module.", "_orig_mod.", "net.")
# How many names to list per category in a mismatch message.
MAX_LISTED = 10


def _is_tensor_dict(obj) -> bool:
    if not isinstance(obj, Mapping) or not obj:
        return False
    return all(isinstance(v, torch.Tensor) for v in obj.values())


def _is_lightning(obj) -> bool:
    return (
        isinstance(obj, Mapping)
        and "state_dict" in obj
        and ("pytorch-lightning_version" in obj or "epoch" in obj or "global_step" in obj)
    )


def _strip_shared_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip each known prefix for as long as every key carries it (handles e.g. module._orig_mod.)."""
    changed = True
    while changed and sd:
        changed = False
        for prefix in PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix) :]: v for k, v in sd.items()}
                changed = True
    return sd


def _strip_key(key: str, prefixes=PREFIXES) -> str:
    """Strip known prefixes from one key, repeatedly."""
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                changed = True
    return key


def _rename(sd: Mapping[str, torch.Tensor], rename, source: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        new = rename(key)
        if new in out:
            raise CheckpointError(f"{source}: two checkpoint entries map to the same name {new!r}")
        out[new] = value
    return out


def _find_tensor_dict(obj, source: str) -> dict[str, torch.Tensor]:
    if _is_tensor_dict(obj):
        return dict(obj)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a dict of tensors, got {type(obj).__name__}")
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner:
            return _find_tensor_dict(inner, source)
    # Unknown wrapper name: accept it only when exactly one nested dict of tensors exists.
    candidates = [k for k, v in obj.items() if _is_tensor_dict(v)]
    if len(candidates) == 1:
        return dict(obj[candidates[0]])
    top = ", ".join(repr(k) for k in list(obj)[:MAX_LISTED])
    raise CheckpointError(
        f"{source}: cannot find the weights: no dict of tensors under any of {WRAPPER_KEYS} "
        f"(top-level keys: {top})"
    )


def _unwrap_raw(obj, source: str) -> dict[str, torch.Tensor]:
    """Unwrap to a flat dict of tensors, without stripping prefixes."""
    sd = _find_tensor_dict(obj, source)
    bad = [k for k in sd if not isinstance(k, str)]
    if bad:
        raise CheckpointError(f"{source}: state_dict has non-string keys, e.g. {bad[0]!r}")
    return sd


def unwrap_state_dict(obj, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Unwrap a loaded checkpoint object to a flat ``{name: tensor}`` dict with prefixes removed."""
    sd = _unwrap_raw(obj, source)
    if _is_lightning(obj):
        # A LightningModule stores its network as ``self.net``; other modules (losses) keep their names.
        sd = _rename(sd, lambda k: _strip_key(k, ("net.",)), source)
    return _strip_shared_prefixes(sd)


def incomplete(path: str | os.PathLike) -> str | None:
    """Why a weights file is cut short, by its own format (None when it looks whole, or the format has no such
    check): a safetensors file must hold its header and every tensor's bytes, a zip checkpoint (torch.save's
    format) must end with its end-of-central-directory record."""
    import json
    import struct

    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if path.suffix.lower() == SAFETENSORS_SUFFIX:
            if len(head) < 8:
                return f"{size} bytes, shorter than a safetensors header"
            (n,) = struct.unpack("<Q", head)
            if 8 + n > size:
                return f"{size} bytes, but its header alone declares {8 + n}"
            try:
                header = json.loads(fh.read(n))
                end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            except (ValueError, KeyError, TypeError, IndexError):
                return "its safetensors header is not readable"
            return None if 8 + n + end <= size else f"{size} bytes, but its tensors need {8 + n + end}"
        if head[:4] == b"PK\x03\x04":  # a zip: torch.save's format since torch 1.6
            fh.seek(max(0, size - 65536 - 22))
            if b"PK\x05\x06" not in fh.read():
                return f"{size} bytes and no zip end record: cut short"
    return None


def _read_raw(path: Path):
    """Read a checkpoint file into the object it holds, never executing pickled code."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc}); it may be cut short or "
                                  "damaged: delete it and fetch it again (`cirbench models fetch NAME`)") from exc
    if suffix in PICKLE_SUFFIXES:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(
                f"refused to load {path}: it is not a plain tensor checkpoint (it contains objects "
                f"that need arbitrary code to unpickle, which cirbench never runs). Re-save it as a "
                f"plain state_dict or .safetensors in a trusted environment. Detail: {first_line}"
            ) from exc
        except Exception as exc:
            raise CheckpointError(f"{path}: could not read checkpoint ({type(exc).__name__}: {exc}); it may be cut "
                                  "short or damaged: delete it and fetch it again (`cirbench models fetch NAME`)"
                                  ) from exc
    raise CheckpointError(
        f"{path}: unsupported checkpoint extension {suffix!r} "
        f"(expected one of {', '.join(PICKLE_SUFFIXES + (SAFETENSORS_SUFFIX,))})"
    )


def _match_to_model(sd: dict[str, torch.Tensor], expected: Mapping, source: str) -> dict[str, torch.Tensor]:
    """Rename keys to the model's names: strip known prefixes per key until the name is one it has.

    Doing this against the model (rather than blindly) keeps a model whose own top-level submodule
    is called ``net`` loadable, and maps Lightning ``net.*`` keys next to unrelated extra entries.
    """

    def rename(key: str) -> str:
        candidate = key
        while candidate not in expected:
            prefix = next((p for p in PREFIXES if candidate.startswith(p)), None)
            if prefix is None:
                return key  # no match: keep the original name so the error shows it as stored
            candidate = candidate[len(prefix) :]
        return candidate

    return _rename(sd, rename, source)


def _format_list(title: str, note: str, items: list[str]) -> list[str]:
    lines = [f"  {title} ({len(items)}), {note}:"]
    lines += [f"    {item}" for item in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        lines.append(f"    ... and {len(items) - MAX_LISTED} more")
    return lines


def _mismatch_message(model: nn.Module, source: str, missing, unexpected, misshaped) -> str:
    lines = [f"checkpoint {source} does not match {type(model).__name__}:"]
    if missing:
        lines += _format_list("missing keys", "in the model but not in the checkpoint", missing)
    if unexpected:
        lines += _format_list("unexpected keys", "in the checkpoint but not in the model", unexpected)
    if misshaped:
        lines += _format_list(
            "mis-shaped keys",
            "model shape vs checkpoint shape",
            [f"{k}: expected {list(a)}, got {list(b)}" for k, a, b in misshaped],
        )
    n_model = len(model.state_dict())
    if missing and len(missing) == n_model:
        lines.append("  none of the model's keys were found: is this a checkpoint for another architecture?")
    return "\n".join(lines)


def load_into(
    model: nn.Module,
    state_dict_or_path,
    *,
    strict: bool = True,
    sha256: str | None = None,
    source: str | None = None,
):
    """Load weights into ``model`` after verifying them; returns torch's (missing, unexpected) result.

    ``state_dict_or_path`` is a file path or an already-loaded (possibly wrapped) dict. ``sha256``,
    when given, must match the file. Any key or shape mismatch raises :class:`CheckpointError`
    listing the offending names; with ``strict=False`` missing/unexpected keys are tolerated but
    mis-shaped ones never are.
    """
    if isinstance(state_dict_or_path, str | os.PathLike):
        path = Path(state_dict_or_path)
        source = source or str(path)
        if sha256 is not None:
            actual = sha256_file(path) if path.is_file() else None
            if actual is None:
                raise CheckpointError(f"checkpoint not found: {path}")
            if actual.lower() != sha256.strip().lower():
                raise CheckpointError(
                    f"sha256 mismatch for {path}:\n  expected {sha256.strip().lower()}\n  actual   {actual}"
                )
        raw = _read_raw(path)
    elif isinstance(state_dict_or_path, Mapping):
        if sha256 is not None:
            raise ValueError("sha256 can only be verified when loading from a file path")
        source = source or "<state_dict>"
        raw = state_dict_or_path
    else:
        raise TypeError(f"expected a path or a state_dict, got {type(state_dict_or_path).__name__}")

    expected = model.state_dict()
    sd = _match_to_model(_unwrap_raw(raw, source), expected, source)

    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    misshaped = [
        (k, tuple(expected[k].shape), tuple(sd[k].shape))
        for k in expected
        if k in sd and tuple(expected[k].shape) != tuple(sd[k].shape)
    ]
    if misshaped or (strict and (missing or unexpected)):
        raise CheckpointError(_mismatch_message(model, source, missing, unexpected, misshaped))

    try:
        return model.load_state_dict(sd, strict=strict)
    except RuntimeError as exc:  # e.g. a dtype torch cannot copy; keep the error type uniform
        name = type(model).__name__
        raise CheckpointError(f"checkpoint {source}: loading into {name} failed: {exc}") from exc


def save_state_dict(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> Path:
    """Save a flat dict of tensors to ``.safetensors`` or ``.pth``/``.pt``, atomically.

    Tensors are detached, moved to CPU and cloned: cloning drops shared storage (which safetensors
    rejects, and which would make torch.save write whole parent storages for views).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (SAFETENSORS_SUFFIX, ".pth", ".pt"):
        raise CheckpointError(f"{path}: can only save .safetensors, .pth or .pt")
    bad = [k for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries must be str -> Tensor; bad entries: {bad[:MAX_LISTED]}")
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}

    try:
        if suffix == SAFETENSORS_SUFFIX:
            from safetensors.torch import save_file

            # save_file wants a file name; it writes to the temp file atomic_write has open (fsync covers it).
            return atomic_write(path, lambda fh: save_file(tensors, fh.name))
        return atomic_write(path, lambda fh: torch.save(tensors, fh))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write the weights ({exc.strerror or exc}); the previous file, if any, "
                              "is intact: free space and retry") from None
