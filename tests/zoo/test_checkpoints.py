"""Checkpoint loader: wrappers, prefixes, formats, refusal of code-carrying pickles, clear mismatches."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest
import torch
from helpers import read_state_dict
from safetensors.torch import save_file
from torch import nn

from cirbench.files import sha256_file
from cirbench.zoo.checkpoints import (
    CheckpointError,
    load_into,
    save_state_dict,
    unwrap_state_dict,
)

torch.set_num_threads(1)


class Small(nn.Module):
    def __init__(self, width: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(2, width, 3)
        self.bn = nn.BatchNorm2d(width)  # brings buffers, incl. an int64 one
        self.head = nn.Linear(4, 2)


def _reference() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = Small()
    model.bn.running_mean.normal_()
    model.bn.num_batches_tracked.fill_(7)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _prefixed(sd, prefix):
    return {prefix + k: v for k, v in sd.items()}


def _assert_same(got: dict, ref: dict):
    assert sorted(got) == sorted(ref)  # safetensors stores keys sorted, so order is not compared
    for k in ref:
        assert got[k].dtype == ref[k].dtype, k
        torch.testing.assert_close(got[k], ref[k], rtol=0, atol=0)


# Each variant: (file suffix, builder of the object to store from the reference state_dict).
VARIANTS = {
    "bare": (".pth", lambda sd: sd),
    "params": (".pth", lambda sd: {"params": sd}),
    "params_ema_preferred": (
        ".pth",
        lambda sd: {"params": {k: torch.zeros_like(v) for k, v in sd.items()}, "params_ema": sd},
    ),
    "state_dict": (".pt", lambda sd: {"state_dict": sd, "optimizer": {"lr": 0.1}}),
    "model": (".pth", lambda sd: {"model": sd, "iter": 10}),
    "net": (".bin", lambda sd: {"net": sd}),
    "module_prefix": (".pth", lambda sd: _prefixed(sd, "module.")),
    "net_prefix": (".pth", lambda sd: _prefixed(sd, "net.")),
    "orig_mod_prefix": (".pth", lambda sd: _prefixed(sd, "_orig_mod.")),
    "module_orig_mod_prefix": (".pth", lambda sd: _prefixed(sd, "module._orig_mod.")),
    "params_module": (".pth", lambda sd: {"params": _prefixed(sd, "module.")}),
    "lightning": (
        ".ckpt",
        lambda sd: {"state_dict": _prefixed(sd, "net."), "epoch": 3, "global_step": 120},
    ),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_wrapped_and_prefixed_checkpoints_load(tmp_path, variant):
    ref = _reference()
    suffix, build = VARIANTS[variant]
    path = tmp_path / f"weights{suffix}"
    torch.save(build(ref), path)

    _assert_same(read_state_dict(path), ref)

    model = Small()
    load_into(model, path)
    _assert_same(model.state_dict(), ref)

    # An in-memory (wrapped) dict goes through the same path.
    model = Small()
    load_into(model, build(ref))
    _assert_same(model.state_dict(), ref)


def test_safetensors_roundtrip(tmp_path):
    ref = _reference()
    path = tmp_path / "w.safetensors"
    save_file(ref, str(path))
    _assert_same(read_state_dict(path), ref)
    model = Small()
    load_into(model, path)
    _assert_same(model.state_dict(), ref)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_save_state_dict_atomic_and_readable(tmp_path, suffix):
    ref = _reference()
    # A non-contiguous view and a tensor sharing storage with it must both save.
    base = torch.arange(12.0).reshape(3, 4)
    ref_extra = {**ref, "t": base.t(), "row": base[0]}
    path = save_state_dict(ref_extra, tmp_path / "sub" / f"out{suffix}")
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    _assert_same(read_state_dict(path), ref_extra)


def test_save_refuses_non_tensors(tmp_path):
    with pytest.raises(CheckpointError):
        save_state_dict({"a": 1}, tmp_path / "x.pth")
    assert not list(tmp_path.iterdir())


class _Payload:
    """Unpickling this calls open(marker, "w"), i.e. it creates a file: a stand-in for malicious code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def test_code_carrying_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"conv.weight": torch.zeros(1), "x": _Payload(marker)}, path)

    with pytest.raises(CheckpointError) as info:
        load_into(Small(), path)
    msg = str(info.value)
    assert str(path) in msg and "refused" in msg and "not a plain tensor checkpoint" in msg
    assert not marker.exists()

    with pytest.raises(CheckpointError, match="refused"):
        load_into(Small(), path)
    assert not marker.exists()


def test_payload_is_real(tmp_path):
    # Control for the test above: an unsafe load really would run the payload.
    marker = tmp_path / "control"
    path = tmp_path / "evil.pth"
    torch.save({"x": _Payload(marker)}, path)
    obj = torch.load(path, weights_only=False)
    obj["x"].close()
    assert marker.exists()


def test_mismatch_message_names_keys(tmp_path):
    ref = _reference()
    bad = dict(ref)
    del bad["head.bias"]
    bad["conv.weight"] = torch.zeros(5, 2, 3, 3)
    bad["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(bad, path)

    with pytest.raises(CheckpointError) as info:
        load_into(Small(), path)
    msg = str(info.value)
    assert str(path) in msg and "Small" in msg
    assert "missing keys (1)" in msg and "head.bias" in msg
    assert "unexpected keys (1)" in msg and "extra.weight" in msg
    assert "mis-shaped keys (1)" in msg and "conv.weight: expected [3, 2, 3, 3], got [5, 2, 3, 3]" in msg


def test_non_strict_tolerates_missing_but_not_misshaped():
    ref = _reference()
    partial = {k: v for k, v in ref.items() if not k.startswith("head.")}
    model = Small()
    result = load_into(model, partial, strict=False)
    assert set(result.missing_keys) == {"head.weight", "head.bias"}
    with pytest.raises(CheckpointError, match="mis-shaped"):
        load_into(Small(), {**partial, "conv.bias": torch.zeros(9)}, strict=False)


def test_other_architecture_gives_readable_error():
    other = {f"layer{i}.weight": torch.zeros(2, 2) for i in range(30)}
    with pytest.raises(CheckpointError) as info:
        load_into(Small(), {"params": other}, source="other.pth")
    msg = str(info.value)
    assert "other.pth" in msg and "another architecture" in msg
    assert "unexpected keys (30)" in msg and "... and 20 more" in msg


def test_sha256(tmp_path):
    ref = _reference()
    path = tmp_path / "w.pth"
    torch.save(ref, path)
    digest = sha256_file(path)
    load_into(Small(), path, sha256=digest.upper())  # case-insensitive
    wrong = "0" * 64
    with pytest.raises(CheckpointError) as info:
        load_into(Small(), path, sha256=wrong)
    assert wrong in str(info.value) and digest in str(info.value)


def test_unwrap_errors():
    with pytest.raises(CheckpointError, match="cannot find the weights"):
        unwrap_state_dict({"epoch": 3, "note": "hi"})
    with pytest.raises(CheckpointError, match="not found"):
        load_into(Small(), "/nonexistent/weights.pth")


def test_model_with_own_net_submodule(tmp_path):
    # A model whose only child is ``net``: its keys start with "net." and must not be stripped away.
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(2, 2)

    src = Wrapper()
    path = tmp_path / "w.safetensors"
    save_state_dict(src.state_dict(), path)
    dst = Wrapper()
    load_into(dst, path)
    _assert_same(dst.state_dict(), src.state_dict())
