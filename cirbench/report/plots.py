"""Figures from records (matplotlib, Agg backend; each figure saved as PNG and PDF).

- ``{metric}_vs_qf``: metric against QF per dataset (single JPEG), a line per model, published results
  as open markers.
- ``diff_{metric}_to_{reference}``: per-image difference to the reference model, box plot with the
  images as jittered points, per dataset and QF.
- ``crops_{dataset}_q{qf}``: the same window of ground truth / JPEG / each model, the first metric in the label,
  from the images the run saved (``cirbench run --save-images``); runs without saved images have no crops.
  Nothing is re-run: a report is made from what the run wrote.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..jpeg import Degradation
from ..metrics import Metric
from ..records import gt_image_path, output_image_path
from .aggregate import BASELINE, aggregate, load, metric_specs, pick_metrics, select_space

__all__ = ["make_plots", "figure_caption"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display; safe in CI and worker processes
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    paths = []
    for ext in ("png", "pdf"):
        p = out_dir / f"{name}.{ext}"
        try:
            fig.savefig(
                p, dpi=150, bbox_inches="tight", metadata={"CreationDate": None} if ext == "pdf" else None
            )
        except OSError as exc:
            p.unlink(missing_ok=True)  # a plot cut short is worse than none
            raise ConfigError(f"{p}: cannot write the plot ({exc.strerror or exc}); free disk space or choose "
                              "another --plots folder") from None
        paths.append(p)
    return paths


def _label(model: str, setting: str) -> str:
    return model if setting == "single" else f"{model} ({setting})"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text))


def _axis_label(metric: Metric, prefix: str = "") -> str:
    """"PSNR (dB) ↑ better": the unit and the direction from the spec."""
    unit = f" ({metric.unit})" if metric.unit else ""
    return f"{prefix}{metric.label}{unit}  {metric.arrow} better"


def figure_caption(stem: str) -> str:
    """What a figure shows, from the name :func:`make_plots` gave it."""
    if m := re.fullmatch(r"(.+)_vs_qf", stem):
        return f"Mean {m[1]} against the JPEG quality factor, per dataset (single JPEG); published results: open marks"
    if m := re.fullmatch(r"diff_(.+)_to_(.+)", stem):
        return f"Per-image {m[1]} difference to {m[2]}, per dataset and QF (box: quartiles; dots: images)"
    if m := re.fullmatch(r"crops_(.+)_q(\d+)", stem):
        return (f"The same window of the ground truth, the JPEG input and each model's output: {m[1]}, QF {m[2]}, the "
                "image where the best model gains most")
    return stem


def _metric_vs_qf(agg, pub, metric: Metric, out_dir: Path, plt, notes: list[str]) -> list[Path]:
    single = agg[agg["degradation"] == "jpeg"]
    if single.empty:
        return []
    if single["qf"].nunique() < 2:  # a curve of one point says nothing a table does not
        notes.append(f"no {metric.name}_vs_qf figure: the records hold one QF ({int(single['qf'].iloc[0])}); "
                     "run more QFs (--qf 10,20,30,40) for a curve")
        return []
    datasets = list(dict.fromkeys(single["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6), squeeze=False)
    keys = list(dict.fromkeys(zip(single["model"], single["setting"], strict=True)))
    colors = {k: f"C{i % 10}" for i, k in enumerate(keys)}
    pub_methods = list(dict.fromkeys(pub["model"])) if pub is not None else []
    markers = "osD^v<>phX*P"
    for ax, ds in zip(axes[0], datasets, strict=True):
        for key in keys:
            d = single[
                (single["dataset"] == ds) & (single["model"] == key[0]) & (single["setting"] == key[1])
            ]
            d = d.sort_values("qf")
            if len(d):
                ax.plot(d["qf"], d[metric.name], "-o", ms=4, color=colors[key], label=_label(*key))
        if pub is not None:
            p = pub[(pub["dataset"] == ds) & (pub["degradation"] == "jpeg")]
            for i, method in enumerate(pub_methods):
                pm = p[p["model"] == method]
                if metric.name in pm:
                    pm = pm[pm[metric.name].notna()]  # a method the source gives other metrics for
                if len(pm) and metric.name in pm:
                    ax.plot(
                        pm["qf"],
                        pm[metric.name],
                        linestyle="none",
                        marker=markers[i % len(markers)],
                        ms=6,
                        mfc="none",
                        color="0.35",
                        label=f"{method} (published)",
                    )
        ax.set_title(ds)
        ax.set_xticks(sorted(set(single.loc[single["dataset"] == ds, "qf"].astype(int))))
        ax.set_xlabel("JPEG QF")
        ax.set_ylabel(_axis_label(metric))
        ax.grid(alpha=0.3)
    handles, labels = {}, []
    for ax in axes[0]:  # one legend for all panels, each entry once
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    fig.legend(
        [handles[lab] for lab in labels],
        labels,
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout()
    paths = _save(fig, out_dir, f"{_safe(metric.name)}_vs_qf")
    plt.close(fig)
    return paths


def _diff_plot(records, reference: str, metric: Metric, out_dir: Path, plt) -> list[Path]:
    pair = ["dataset", "image", "degradation", "qf", "space"]
    name = metric.name
    ref = records[records["model"] == reference][[*pair, name]].rename(columns={name: "_ref"})
    others = records[records["model"] != reference].merge(ref, on=pair)
    if others.empty:
        return []
    others = others.assign(_diff=pd.to_numeric(others[name]) - pd.to_numeric(others["_ref"]))
    keys = list(dict.fromkeys(zip(others["model"], others["setting"], strict=True)))
    cols = list(dict.fromkeys(zip(others["dataset"], others["degradation"], others["qf"], strict=True)))
    cols.sort(key=lambda c: (c[0], c[1] != "jpeg", c[1], int(c[2])))
    fig, axes = plt.subplots(
        len(keys), 1, figsize=(max(4.0, 1.1 * len(cols) + 1.5), 2.6 * len(keys)), squeeze=False, sharex=True
    )
    rng = np.random.default_rng(0)  # fixed jitter: the figure is reproducible
    for ax, key in zip(axes[:, 0], keys, strict=True):
        sub = others[(others["model"] == key[0]) & (others["setting"] == key[1])]
        data = [
            sub[(sub["dataset"] == c[0]) & (sub["degradation"] == c[1]) & (sub["qf"] == c[2])][
                "_diff"
            ].to_numpy(float)
            for c in cols
        ]
        data = [d[np.isfinite(d)] for d in data]
        ax.boxplot(
            data, positions=range(len(cols)), widths=0.5, showfliers=False, medianprops={"color": "C1"}
        )
        for i, d in enumerate(data):
            ax.plot(i + rng.uniform(-0.15, 0.15, d.size), d, ".", color="C0", alpha=0.6, ms=4)
        ax.axhline(0, color="0.3", lw=0.8, ls="--")
        ax.set_ylabel(_axis_label(metric, "Δ"))
        ax.set_title(f"{_label(*key)} − {reference}, per image", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    labels = [f"{c[0]}\n{Degradation.from_name(c[1], c[2]).label}" for c in cols]
    axes[-1, 0].set_xticks(range(len(cols)), labels, fontsize=8)
    fig.tight_layout()
    paths = _save(fig, out_dir, f"diff_{_safe(metric.name)}_to_{_safe(reference)}")
    plt.close(fig)
    return paths


def _window(gt: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left of the ``size`` square with the most texture (variance), where artifacts show most."""
    g = gt.astype(np.float64)
    if g.ndim == 3:
        g = g.mean(axis=2)
    h, w = g.shape
    if h <= size or w <= size:
        return 0, 0
    step = max(1, size // 2)
    best, at = -1.0, (0, 0)
    for y in range(0, h - size + 1, step):
        for x in range(0, w - size + 1, step):
            v = float(g[y : y + size, x : x + size].var())
            if v > best:
                best, at = v, (y, x)
    return at


def _saved(run_dirs: list[Path]):
    """``get(dataset, image, degradation, qf, model, setting)``: a saved image of one of the runs (``model``
    None for the ground truth), or None."""
    from PIL import Image

    def get(dataset, image, degradation, qf, model, setting="single"):
        for run in run_dirs:
            p = (gt_image_path(run, dataset, degradation, image) if model is None
                 else output_image_path(run, model, setting, dataset, degradation, qf, image))
            if p.is_file():
                with Image.open(p) as im:
                    return np.asarray(im).copy()
        return None

    return get


def _crops(records, reference, metric: Metric, provider, out_dir: Path, plt, size: int,
           notes: list[str]) -> list[Path]:
    """Per dataset, at its lowest single-JPEG QF, the image where the best model gains most in ``metric``."""
    name, sign = metric.name, (1 if metric.higher_is_better else -1)
    paths = []
    unsaved = []
    single = records[records["degradation"] == "jpeg"]
    for ds in dict.fromkeys(single["dataset"]):
        d = single[single["dataset"] == ds]
        qf = int(d["qf"].min())
        d = d[d["qf"] == qf]
        values = pd.to_numeric(d[name]) * sign  # larger is better from here on
        ref = values[d["model"] == reference].set_axis(d.loc[d["model"] == reference, "image"])
        gains = values[d["model"] != reference].groupby(d.loc[d["model"] != reference, "image"]).max() - ref
        gains = gains.dropna()
        if gains.empty:
            continue
        image = str(gains.idxmax())
        gt = provider(ds, image, "jpeg", qf, None)
        if gt is None:
            unsaved.append(ds)
            continue
        y, x = _window(np.asarray(gt), size)
        shown = {(r["model"], r["setting"]): r[name] for r in d[d["image"] == image].to_dict("records")}
        order = sorted(shown, key=lambda k: (k[0] != reference, k[1] != "single"))
        unit = f" {metric.unit}" if metric.unit else f" {metric.label}"
        panels = [("Ground truth", gt)]
        for model, setting in order:
            img = provider(ds, image, "jpeg", qf, model, setting)
            if img is not None:
                label = "JPEG" if model == reference == BASELINE else model if setting == "single" else \
                    f"{model} ({setting})"
                panels.append((f"{label}\n{shown[(model, setting)]:.{metric.decimals}f}{unit}", img))
        fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.6), squeeze=False)
        for ax, (title, img) in zip(axes[0], panels, strict=True):
            crop = np.asarray(img)[y : y + size, x : x + size]
            ax.imshow(
                crop, cmap="gray" if crop.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest"
            )
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        fig.suptitle(f"{ds} / {image}, QF {qf}, crop at ({y}, {x})", fontsize=9)
        fig.tight_layout()
        paths += _save(fig, out_dir, f"crops_{_safe(ds)}_q{qf}")
        plt.close(fig)
    if unsaved:
        notes.append(f"no crops for {', '.join(unsaved)}: the run saved no images; rerun it with --save-images "
                     "(the same --out: records already done are kept, their images are written)")
    return paths


def make_plots(
    run_dirs: str | os.PathLike | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    reference: str = BASELINE,
    published: bool = False,
    space: str = "y",
    metrics: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    qfs: Sequence[int] | None = None,
    models: Sequence[str] | None = None,
    published_path: str | os.PathLike | None = None,
    crop_size: int = 96,
    notes: list[str] | None = None,
) -> list[Path]:
    """Write the figures of ``run_dirs`` into ``out_dir``; returns the files written (PNG and PDF). ``metrics``:
    the metrics plotted (default: the first recorded), the first of them also choosing the crops' image. ``notes``
    receives a line for each figure left out and why."""
    notes = [] if notes is None else notes
    plt = _pyplot()
    run_dirs = [run_dirs] if isinstance(run_dirs, (str, os.PathLike)) else list(run_dirs)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{out}: cannot create the plots folder ({exc.strerror or exc}); choose another "
                          "--plots folder") from None
    records = load(list(run_dirs), space=space, datasets=datasets, qfs=qfs)
    if records.empty:
        return []
    if models:  # keep the reference: the difference plot needs it
        records = records[records["model"].isin([*models, reference])]
    specs = metric_specs(run_dirs, records)
    chosen = pick_metrics(specs, metrics or list(specs)[:1])
    agg = aggregate(records, [m.name for m in chosen])
    pub = None
    if published:
        from .published import load_published

        pub = select_space(load_published(published_path), space)
        pub = pub[pub["dataset"].isin(set(agg["dataset"]))]
    paths: list[Path] = []
    for metric in chosen:
        paths += _metric_vs_qf(agg, pub, metric, out, plt, notes)
        paths += _diff_plot(records, reference, metric, out, plt)
    paths += _crops(records, reference, chosen[0], _saved([Path(d) for d in run_dirs]), out, plt, crop_size, notes)
    return paths
