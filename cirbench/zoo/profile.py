"""Model profiles: a model's card, size, compute and memory (``cirbench models info``, and the efficiency
columns of every report, which :func:`profile` measures once per model and caches).

Measurements are made with random weights when the real ones are absent (they do not depend on
the values), on one 1 x C x size x size input padded as the harness would pad it:

* **GFLOPs** from ``torch.utils.flop_counter.FlopCounterMode`` for one forward at batch 1. It counts
  matrix products and convolutions (incl. attention via matmul/SDPA) as 2 FLOPs per multiply-add;
  element-wise ops, norms and softmax are not counted. GMACs (= GFLOPs / 2) are also shown, since
  papers often quote MACs as "FLOPs".
* **Peak memory** on CPU: the growth of the resident set size during one forward under
  ``torch.inference_mode()``, measured on the network already built (nothing is resolved or built again).
  After a small warm-up forward, ``gc`` and glibc ``malloc_trim``, the kernel's high-water mark is reset
  (``/proc/self/clear_refs``); the result is ``VmHWM`` after the forward minus ``VmRSS`` before it. It
  includes activations, temporary buffers and allocator overhead, and excludes the weights and the input
  (shown separately). Linux only; elsewhere it is reported as not measured. ``tracemalloc`` cannot be used:
  torch allocates outside Python's allocator.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import ConfigError
from .cards import list_cards, load_card
from .checkpoints import load_into
from .factory import build_network, create_model
from .inference import InferenceSettings, pad_image

__all__ = ["model_info", "model_stats", "network_stats", "profile", "peak_rss_growth"]


def _network(name: str, weights: str | None):
    """(network or callable, ModelInfo-like dict, card or None, weights status line)."""
    import torch

    if not name.endswith(".toml") and name not in list_cards():
        restorer = create_model(name, weights=weights)
        if not hasattr(restorer, "nets"):
            raise ConfigError(f"{name}: a ready-made restorer; cirbench cannot look inside it to measure it")
        net, info = restorer.nets[0], restorer.info
        status = f"{weights} (loaded)" if weights else "user model (its own initialisation)"
        return net, info, None, status
    card = load_card(name)
    net = build_network(card).eval()
    paths = [Path(weights)] if weights else card.weight_paths()
    present = [p for p in paths if p.exists()]
    if weights:
        load_into(net, weights)  # checks the file matches the architecture
        status = f"{weights} (loaded, matches the architecture)"
    elif paths and len(present) == len(paths):
        status = "present: " + ", ".join(str(p) for p in paths)
    else:
        missing = [str(p) for p in paths if not p.exists()] or ["(no weights file named in the card)"]
        where = "; ".join(card.urls) if card.urls else "no public URL known"
        status = (f"MISSING {', '.join(missing)} — measured with random weights. Get them from: {where}"
                  + (f" ({card.weights.note})" if card.weights.note else ""))
    info = {"channels": card.channels, "pad_multiple": card.pad_multiple, "pad_mode": card.pad_mode,
            "params": sum(p.numel() for p in net.parameters()) if isinstance(net, torch.nn.Module) else None}
    return net, info, card, status


def _info_dict(info) -> dict:
    return info if isinstance(info, dict) else {"channels": info.channels, "pad_multiple": info.pad_multiple,
                                                "pad_mode": info.pad_mode, "params": info.params}


def _input(info: dict, size: int, device=None):
    import torch

    x = torch.rand(1, info["channels"] or 3, size, size, generator=torch.Generator().manual_seed(0))
    multiple = max(1, info["pad_multiple"])
    x = pad_image(x, multiple, info["pad_mode"]) if multiple > 1 else x
    return x.to(device) if device is not None else x


def _device_of(net):
    params = list(net.parameters()) if hasattr(net, "parameters") else []
    return params[0].device if params else None


def _status_bytes(field: str) -> int | None:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in bytes; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak() -> bool:
    # Linux >= 4.0: writing 5 to clear_refs resets the high-water mark (VmHWM) to the current RSS,
    # so imports and model construction do not count towards the forward's peak.
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _trim_heap() -> None:
    # Hand freed heap pages back to the OS so the forward's growth is not hidden by reuse.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_rss_growth(fn):
    """Run ``fn()``; return ``(result, bytes)`` where bytes is the peak resident-set growth during
    the call (``VmHWM`` after minus ``VmRSS`` before, the high-water mark reset first), or None
    where the kernel interface is missing. Freed heap is trimmed first so reuse does not hide growth."""
    import gc

    gc.collect()
    _trim_heap()
    ok = _reset_peak()
    before = _status_bytes("VmRSS")
    result = fn()
    peak = _status_bytes("VmHWM")
    growth = max(0, peak - before) if ok and peak is not None and before is not None else None
    return result, growth


def _peak_forward(net, d: dict, x) -> dict:
    """Peak RSS growth and time of one forward of ``net`` on ``x``, after a small warm-up forward (one-time
    library set-up is not the model's)."""
    import torch

    with torch.inference_mode():
        net(_input(d, max(8, d["pad_multiple"]), x.device))

    def forward() -> float:
        with torch.inference_mode():
            start = time.perf_counter()
            net(x)  # the output is dropped at once; its memory is part of the peak
            return time.perf_counter() - start

    seconds, peak = peak_rss_growth(forward)
    return {"peak_bytes": peak, "seconds": seconds}


def network_stats(net, info, size: int = 256, *, memory: bool = True) -> dict:
    """Params, buffers, input shape, flops (2 per MAC), peak_bytes and forward_seconds (None when not
    measured) of a network already built, at ``size`` x ``size`` padded as the harness pads it."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    d = _info_dict(info)
    is_module = isinstance(net, torch.nn.Module)
    x = _input(d, size, _device_of(net))
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(x)
    stats = {**d, "input_shape": tuple(x.shape), "flops": counter.get_total_flops(),
             "params": sum(p.numel() for p in net.parameters()) if is_module else None,
             "buffers": sum(b.numel() for b in net.buffers()) if is_module else 0,
             "weights_bytes": sum(t.numel() * t.element_size() for t in net.state_dict().values()) if is_module else 0,
             "input_bytes": x.numel() * x.element_size(), "threads": torch.get_num_threads(),
             "peak_bytes": None, "forward_seconds": None, "memory_note": "not measured"}
    if memory:
        m = _peak_forward(net, d, x)
        stats["peak_bytes"], stats["forward_seconds"] = m["peak_bytes"], m["seconds"]
        stats["memory_note"] = "" if m["peak_bytes"] is not None else "needs Linux /proc"
    return stats


def model_stats(name: str, size: int = 256, weights: str | None = None, *, memory: bool = True) -> dict:
    """:func:`network_stats` of a model by name (built once), plus its weights status and card."""
    net, info, card, status = _network(name, weights)
    return {"name": name, "card": card, "weights_status": status, **network_stats(net, info, size, memory=memory)}


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.2f} GiB"


def model_info(name: str, size: int = 256, weights: str | None = None, *, memory: bool = True) -> str:
    """A text report on a model card (or ``module:attr``): card fields, parameters, GFLOPs and peak
    memory of one forward at ``size`` x ``size``, and the weights' status. Works without weights."""
    if name == "jpeg":
        return "model: jpeg\nthe JPEG-compressed input itself (zero baseline): no network, no weights"
    s = model_stats(name, size, weights, memory=memory)
    card = s["card"]
    lines = [f"model: {name}"]
    if card is not None:
        lines += [f"card: {card.path}", f"description: {card.description}", f"architecture: {card.arch}",
                  f"kwargs: {json.dumps(card.kwargs)}" if card.kwargs else "kwargs: (architecture defaults)",
                  f"licence: {card.license or 'not stated'}", f"citation: {card.citation or 'not stated'}",
                  f"setting: {card.setting}", f"takes QF: {'yes' if card.takes_qf else 'no'}"]
    lines.append(f"channels: {s['channels']}; padding: {s['pad_mode']} to a multiple of {s['pad_multiple']}")
    if s["params"] is not None:
        lines.append(f"parameters: {s['params']:,} ({s['params'] / 1e6:.3f} M)"
                     + (f"; buffers: {s['buffers']:,} elements" if s["buffers"] else ""))
    shape = "x".join(str(v) for v in s["input_shape"])
    lines.append(f"compute at {size}x{size} (network input {shape}): {s['flops'] / 1e9:.2f} GFLOPs "
                 f"({s['flops'] / 2e9:.2f} GMACs; FlopCounterMode, matmul/conv only)")
    if card is not None and card.setting != "single":
        st = InferenceSettings.named(card.setting)
        n = max(1, len(card.weight_names)) * (2 if st.ensemble == "transpose" else 1)
        lines.append(f"note: figures are for one forward; setting {card.setting} runs {n} whole-image passes per "
                     f"image" + (f", each in {st.tile}-px tiles with {st.overlap} px overlap" if st.tile else ""))
    if s["peak_bytes"] is not None:
        lines.append(f"peak memory of one CPU forward: {_human(s['peak_bytes'])} above the resident set "
                     f"(VmHWM growth; weights {_human(s['weights_bytes'])} and input "
                     f"{_human(s['input_bytes'])} not included); that forward took {s['forward_seconds']:.2f} s "
                     f"on {s['threads']} thread(s)")
    elif memory:
        lines.append(f"peak memory: not measured ({s['memory_note']})")
    lines.append(f"weights: {s['weights_status']}")
    return "\n".join(lines)


PROFILE_SIZE = 256


def profile(restorer, size: int = PROFILE_SIZE) -> dict:
    """Parameters, GFLOPs and peak CPU memory (MB) of one forward at ``size`` x ``size`` of a restorer already
    built (its first network): the report's efficiency columns. Cached under ``$CIRBENCH_CACHE/profiles`` per
    (architecture and weights as the restorer records them, parameter count, torch, threads, size): the values
    depend on the shapes, not on the weights' values."""
    import hashlib

    import torch

    from ..files import atomic_write, cache_dir, dumps, loads

    net, info = restorer.nets[0], restorer.info
    ident = json.dumps([type(net).__module__, type(net).__qualname__, info.params, info.channels, info.pad_multiple,
                        info.pad_mode, {k: info.extra.get(k) for k in ("card", "arch", "user", "weights_sha256")},
                        torch.__version__, size, torch.get_num_threads()], sort_keys=True, default=str)
    path = cache_dir() / "profiles" / f"{hashlib.sha256(ident.encode()).hexdigest()[:24]}.json"
    if path.is_file():
        try:
            return loads(path.read_text())
        except ValueError:
            pass  # a damaged cache entry is measured again
    s = network_stats(net, info, size)
    out = {"params": s["params"], f"gflops_{size}": round(s["flops"] / 1e9, 3),
           "peak_mem_mb": round(s["peak_bytes"] / 2**20, 1) if s["peak_bytes"] is not None else None,
           "profile_threads": s["threads"]}
    atomic_write(path, dumps(out))
    return out
