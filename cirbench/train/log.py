"""The training log (``log.jsonl``, one JSON record per optimiser step) and its plot (``curves.png``).

A record holds step, stage, loss, lr and seconds, plus ``val_*`` keys on steps that validated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO

import numpy as np

from ..files import atomic_write

__all__ = ["LOG_NAME", "CURVES_NAME", "read_log", "truncate_log", "append_record", "write_curves",
           "phase_table", "write_phase_curves"]

LOG_NAME = "log.jsonl"
CURVES_NAME = "curves.png"


def read_log(path: str | os.PathLike) -> list[dict]:
    """The records of a ``log.jsonl`` (none when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_log(path: Path, last_step: int) -> None:
    """Keep only the records up to ``last_step`` (the checkpoint's): a run killed after its last checkpoint
    logged steps that the resumed run will log again."""
    kept = [r for r in read_log(path) if r["step"] <= last_step]
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in kept))


def append_record(fh: IO[str], record: dict) -> None:
    """Append one record and flush, so a killed run loses at most the step in progress."""
    fh.write(json.dumps(record) + "\n")
    fh.flush()


def write_curves(log_path: Path, png_path: Path):
    """Plot the training loss, the validation gain over the JPEG input per QF against samples seen, and the
    throughput (samples/s) (Agg canvas: no display, no global backend). Returns the Figure (None for an
    empty log)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = read_log(log_path)
    if not records:
        return None
    fig = Figure(figsize=(13.5, 4.5))
    FigureCanvasAgg(fig)
    ax_loss, ax_val, ax_speed = fig.subplots(1, 3)
    steps = [r["step"] for r in records]
    losses = [r["loss"] for r in records]
    ax_loss.plot(steps, losses, lw=0.6, alpha=0.4, label="loss")
    window = max(1, len(losses) // 50)
    if window > 1:  # a moving average makes the trend readable under per-batch noise
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax_loss.plot(steps[window - 1 :], smooth, lw=1.2, label=f"mean of {window}")
    # L1/Charbonnier losses span decades (log axis); the PSNR loss is negative (linear axis).
    scale = "log" if min(losses) > 0 else "linear"
    ax_loss.set(xlabel="step", ylabel="training loss", yscale=scale, title="loss")
    ax_loss.legend()
    val = [r for r in records if "val_psnr" in r]
    if val:
        # Older logs carry no sample count: the step is the best x they have.
        x = [r.get("samples", r["step"]) for r in val]
        xlabel = "samples seen" if "samples" in val[0] else "step"
        per_qf = val[0].get("val_psnr_qf") or {}
        for q in per_qf:
            gain = [r["val_psnr_qf"][q] - r["val_jpeg_psnr_qf"][q] for r in val]
            ax_val.plot(x, gain, "o-", ms=3, label=f"QF {q}")
        if not per_qf:
            ax_val.plot(x, [r["val_psnr"] - r["val_jpeg_psnr"] for r in val], "o-", ms=3, label="mean")
        ax_val.axhline(0, color="0.4", lw=0.8, ls="--")
        ax_val.legend()
        ax_val.set(xlabel=xlabel)
    ax_val.set(ylabel="PSNR-Y gain over JPEG (dB)", title="validation (EMA)")
    speed = [(r["step"], r["samples_per_s"]) for r in records if "samples_per_s" in r]
    if speed:
        sp = np.array([v for _, v in speed])
        w = max(1, len(sp) // 50)
        sm = np.convolve(sp, np.ones(w) / w, mode="valid") if w > 1 else sp
        ax_speed.plot([s for s, _ in speed][w - 1 :], sm, lw=1.0, label="samples/s")
        waits = [r.get("data_wait_s") for r in records if "samples_per_s" in r]
        if all(v is not None for v in waits):  # the share of each step spent waiting for data
            share = np.array(waits) * sp / np.array([r["samples"] / r["step"] for r in records
                                                     if "samples_per_s" in r])
            ax_speed.plot([s for s, _ in speed], 100 * share, lw=0.6, alpha=0.6, label="% of step waiting for data")
        ax_speed.legend()
    ax_speed.set(xlabel="step", ylabel="samples/s (incl. data wait)", title="throughput")
    for ax in (ax_loss, ax_speed):
        for r in records[1:]:
            if r["stage"] != records[0]["stage"]:
                ax.axvline(r["step"], color="gray", ls=":", lw=0.8)  # stage 2 starts
                break
    fig.tight_layout()
    # format is explicit: the temp file's name does not end in .png.
    atomic_write(png_path, lambda fh: fig.savefig(fh, format="png", dpi=100))
    return fig


def phase_table(phases: list[tuple[str, str | os.PathLike, int]]) -> list[dict]:
    """One row per validation of a chain of runs, each started from the weights of the one before.

    ``phases`` lists (label, log path, global batch size); the batch counts samples for logs that predate the
    ``samples`` key. Rows carry the phase, where it began and the samples seen (both counted from the first
    phase's start), its step, the hours the runs logged (wall time, so shared-machine pauses included) and
    ``gain`` = {QF: EMA PSNR-Y - JPEG PSNR-Y}.
    """
    rows, samples0, hours0 = [], 0, 0.0
    for label, path, batch in phases:
        records = read_log(path)
        if not records:
            continue
        for r in records:
            if "val_psnr_qf" not in r:
                continue
            rows.append({"phase": label, "phase_start": samples0, "step": r["step"],
                         "samples": samples0 + r.get("samples", r["step"] * batch),
                         "hours": hours0 + r["seconds"] / 3600,
                         "gain": {q: r["val_psnr_qf"][q] - r["val_jpeg_psnr_qf"][q] for q in r["val_psnr_qf"]}})
        last = records[-1]
        samples0 += last.get("samples", last["step"] * batch)
        hours0 += last["seconds"] / 3600
    return rows


def write_phase_curves(phases: list[tuple[str, str | os.PathLike, int]], png_path: Path, notes: str = ""):
    """Plot the validation gain over JPEG per QF against samples seen across a chain of runs (phase
    boundaries dotted), so where the curve flattens is visible at a glance. Returns the Figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = phase_table(phases)
    fig = Figure(figsize=(9, 5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    qfs = sorted({q for r in rows for q in r["gain"]}, key=int)
    for q in qfs:
        pts = [(r["samples"], r["gain"][q]) for r in rows if q in r["gain"]]
        ax.plot([x for x, _ in pts], [y for _, y in pts], "o-", ms=3, label=f"QF {q}")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.12 * (hi - lo))  # headroom for the phase labels
    seen = []
    for r in rows:
        if r["phase"] not in seen:
            seen.append(r["phase"])
            ax.axvline(r["phase_start"], color="0.6", ls=":", lw=0.8)
            # alternate heights so labels of short phases do not overprint each other
            ax.annotate(str(r["phase"]), (r["phase_start"], 1 - 0.04 * (len(seen) % 2 == 0)),
                        xycoords=("data", "axes fraction"),
                        va="top", ha="left", fontsize=8, color="0.35")
    ax.axhline(0, color="0.4", lw=0.8, ls="--")
    ax.set(xlabel="samples seen (all phases)", ylabel="PSNR-Y gain over JPEG (dB)",
           title="validation gain (EMA) across training phases")
    if notes:
        ax.text(0.01, 0.01, notes, transform=ax.transAxes, fontsize=7, va="bottom", color="0.3")
    ax.legend(loc="lower right")
    fig.tight_layout()
    atomic_write(png_path, lambda fh: fig.savefig(fh, format="png", dpi=100))
    return fig
