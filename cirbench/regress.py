"""``cirbench regress``: compare a run's mean metrics with a committed baseline of golden numbers.

A baseline (``results/baselines/*.json``) holds expected means per (model, setting, dataset,
degradation, qf, space, metric), each with a tolerance. ``regress`` runs the baseline's protocol
restricted to its models, datasets and QFs (or reads a finished RUN_DIR), prints the deltas and
exits 0 when every number is within tolerance, 1 on any regression (a number moved, or a baseline
row is absent from the run), 2 on usage or data errors. ``--update`` writes a baseline from a run
for a human to review; with several RUN_DIRs it also measures their spread (run-to-run, thread
count) and widens the tolerances to cover it.

Baseline schema (version 1)::

    {"schema": 1, "protocol": "blind", "protocol_version": "1.0", "protocol_sha256": "...",
     "models": [...], "datasets": [...], "qfs": [...], "created": "...", "note": "...",
     "tolerance": {"psnr": 0.005, "ssim": 0.0001, "psnrb": 0.005},
     "provenance": {...run.json excerpts...},
     "entries": [{"model", "setting", "dataset", "degradation", "qf", "space", "metric",
                  "value", "tol", "n_images"}, ...]}
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .records import GROUP, read_records, read_run_info

__all__ = ["SCHEMA", "DEFAULT_TOLERANCE", "BaselineError", "Row", "load_baseline", "make_baseline",
           "write_baseline", "compare", "run_baseline", "add_regress_parser", "cmd_regress"]

SCHEMA = 1
METRICS = ("psnr", "ssim", "psnrb")
# PSNR/PSNR-B in dB, SSIM unitless. Deterministic pipelines (the JPEG baseline) move by far less.
DEFAULT_TOLERANCE = {"psnr": 0.005, "ssim": 0.0001, "psnrb": 0.005}
# --update with several runs: tolerance = max(default, SPREAD_FACTOR x measured spread).
SPREAD_FACTOR = 4.0
ENTRY_KEYS = (*GROUP, "metric")

OK, REGRESSION, MISSING, NEW = "ok", "REGRESSION", "missing", "new"


class BaselineError(ValueError):
    """A baseline file is absent or malformed (exit 2)."""


@dataclass
class Row:
    """One compared number."""

    key: dict  # ENTRY_KEYS -> value
    expected: float | None
    got: float | None
    tol: float | None
    status: str
    n_expected: int | None = None
    n_got: int | None = None

    @property
    def delta(self) -> float | None:
        if self.expected is None or self.got is None:
            return None
        if self.expected == self.got:  # also +inf == +inf (a perfect image)
            return 0.0
        return self.got - self.expected

    @property
    def failing(self) -> bool:
        return self.status in (REGRESSION, MISSING)

    def label(self) -> str:
        k = self.key
        parts = [k["model"], k["dataset"], f"qf{k['qf']}", k["space"], k["metric"]]
        if k["degradation"] != "jpeg":
            parts.insert(2, k["degradation"])
        if k["setting"] != "single":
            parts.insert(1, k["setting"])
        return "/".join(str(p) for p in parts)

    def describe(self) -> str:
        if self.status == MISSING:
            return f"{self.label()}: expected {_fmt(self.expected)}, absent from the run"
        text = (f"{self.label()}: expected {_fmt(self.expected)}, got {_fmt(self.got)}, "
                f"delta {_fmt(self.delta, signed=True)}, tol {_fmt(self.tol)}")
        if self.n_expected is not None and self.n_got != self.n_expected:
            text += f" (images: expected {self.n_expected}, got {self.n_got})"
        return text


def _fmt(v, signed: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    text = f"{v:+.6f}" if signed else f"{v:.6f}"
    return "+0.000000" if text == "-0.000000" else text  # a rounding residue, not a direction


def _to_json(v: float):
    # JSON has no inf/nan (PSNR of a perfect image is +inf): written as strings, as records do.
    return str(v) if not math.isfinite(v) else round(float(v), 6)


def _from_json(v) -> float:
    return float(v)


def _ceil2(x: float) -> float:
    """``x`` rounded up to two significant digits (a readable tolerance that still covers ``x``)."""
    if x <= 0:
        return 0.0
    scale = 10 ** (math.floor(math.log10(x)) - 1)
    return round(math.ceil(x / scale - 1e-9) * scale, 12)


# --------------------------------------------------------------------------------------- baselines


def load_baseline(path: str | os.PathLike) -> dict:
    """Read and check a baseline file; raises :class:`BaselineError` with the reason."""
    p = Path(path)
    if not p.is_file():
        raise BaselineError(f"{p}: baseline file not found (write one with `cirbench regress --update`)")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise BaselineError(f"{p}: not a cirbench baseline of schema {SCHEMA}")
    for k in ("protocol", "entries"):
        if k not in data:
            raise BaselineError(f"{p}: lacks {k!r}")
    tol = {**DEFAULT_TOLERANCE, **data.get("tolerance", {})}
    entries = []
    for i, e in enumerate(data["entries"]):
        missing = [k for k in (*ENTRY_KEYS, "value") if k not in e]
        if missing:
            raise BaselineError(f"{p}: entry #{i} lacks {missing}")
        if e["metric"] not in METRICS:
            raise BaselineError(f"{p}: entry #{i} has unknown metric {e['metric']!r}")
        entries.append({**e, "value": _from_json(e["value"]), "tol": float(e.get("tol", tol[e["metric"]]))})
    return {**data, "tolerance": tol, "entries": entries}


def _means(df):
    """Means per GROUP (the report's aggregation), in long form: {(GROUP..., metric): (mean, n)}."""
    from .report import aggregate

    out = {}
    if df.empty:
        return out
    for row in aggregate(df).to_dict("records"):
        for m in METRICS:
            key = (*(row[k] for k in GROUP), m)
            out[key] = (float(row[m]), int(row["n_images"]))
    return out


def make_baseline(run_dirs: list[Path], *, tolerance: dict | None = None, note: str = "",
                  models: list[str] | None = None, datasets: list[str] | None = None, qfs: list[int] | None = None,
                  spread_factor: float = SPREAD_FACTOR) -> dict:
    """A baseline from the means of the first run (optionally only some models, datasets, QFs); further
    runs of the same work measure the spread (e.g. another thread count), and each metric's tolerance
    becomes max(tolerance, factor x spread)."""
    if not run_dirs:
        raise ValueError("no run to make a baseline from")
    tol = {**DEFAULT_TOLERANCE, **(tolerance or {})}

    def wanted(key) -> bool:
        k = dict(zip(ENTRY_KEYS, key, strict=True))
        return ((not models or k["model"] in models) and (not datasets or k["dataset"] in datasets)
                and (not qfs or k["qf"] in qfs))

    runs = [{k: v for k, v in _means(read_records(d)).items() if wanted(k)} for d in run_dirs]
    first = runs[0]
    if not first:
        raise ValueError(f"{run_dirs[0]}: holds no records (of the selected models, datasets and QFs)")
    spread = {m: 0.0 for m in METRICS}
    for other, d in zip(runs[1:], run_dirs[1:], strict=True):
        if set(other) != set(first):
            raise ValueError(f"{d}: does not hold the same groups as {run_dirs[0]}; cannot measure spread")
        for key, (v, _) in first.items():
            w = other[key][0]
            if v != w:
                spread[key[-1]] = max(spread[key[-1]], abs(w - v))
    if len(runs) > 1:
        tol = {m: max(tol[m], _ceil2(spread_factor * spread[m])) for m in METRICS}
    info = read_run_info(run_dirs[0])
    proto = info.get("protocol", {})
    if not proto.get("name"):
        raise ValueError(f"{run_dirs[0]}: run.json does not name the protocol; cannot make a baseline")
    entries = [dict(zip(ENTRY_KEYS, key, strict=True), value=_to_json(v), tol=tol[key[-1]], n_images=n)
               for key, (v, n) in sorted(first.items(), key=lambda kv: tuple(str(x) for x in kv[0]))]
    base = {
        "schema": SCHEMA,
        "protocol": proto.get("name"),
        "protocol_version": proto.get("version"),
        "protocol_sha256": proto.get("sha256"),
        "models": sorted({e["model"] for e in entries}),
        "datasets": sorted({e["dataset"] for e in entries}),
        "qfs": sorted({e["qf"] for e in entries}),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "note": note,
        "tolerance": tol,
        "provenance": {k: info.get(k) for k in ("cirbench_version", "git_commit", "encoder", "metric_conventions",
                                                 "libraries", "device", "threads")},
        "entries": entries,
    }
    if len(runs) > 1:
        base["measured_spread"] = {"runs": [str(d) for d in run_dirs], "threads": [read_run_info(d).get("threads")
                                                                                   for d in run_dirs],
                                   "max_abs_delta": {m: float(f"{spread[m]:.3g}") for m in METRICS},
                                   "factor": spread_factor}
    return base


def write_baseline(base: dict, path: str | os.PathLike) -> Path:
    """Write a baseline as indented JSON, one entry per line (readable diffs), atomically."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    head = {k: v for k, v in base.items() if k != "entries"}
    text = json.dumps(head, indent=2)[:-2]  # reopen the object to append the entries list
    lines = ",\n".join("    " + json.dumps(e) for e in base["entries"])
    text += ',\n  "entries": [\n' + lines + "\n  ]\n}\n"
    json.loads(text)  # never write a file that does not read back
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, p)
    return p


# --------------------------------------------------------------------------------------- comparing


def compare(base: dict, run_dirs: list[Path] | Path, *, tol_override: dict | None = None,
            datasets: list[str] | None = None, qfs: list[int] | None = None) -> list[Row]:
    """Rows for every baseline entry (ok / REGRESSION / missing) and every run group the baseline
    lacks (new), restricted to ``datasets`` and ``qfs`` when given."""
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [Path(run_dirs)]
    got = _means(read_records(run_dirs))
    tol_override = tol_override or {}

    def keep(dataset, qf) -> bool:
        return (not datasets or dataset in datasets) and (not qfs or qf in qfs)

    rows, seen = [], set()
    for e in base["entries"]:
        if not keep(e["dataset"], e["qf"]):
            continue
        key = tuple(e[k] for k in ENTRY_KEYS)
        seen.add(key)
        tol = tol_override.get(e["metric"], e["tol"])
        kd = dict(zip(ENTRY_KEYS, key, strict=True))
        if key not in got:
            rows.append(Row(kd, e["value"], None, tol, MISSING, e.get("n_images")))
            continue
        v, n = got[key]
        row = Row(kd, e["value"], v, tol, OK, e.get("n_images"), n)
        d = row.delta
        moved = d is None or math.isnan(d) or abs(d) > tol + 1e-12  # slack for float rounding of tol itself
        fewer = row.n_expected is not None and n != row.n_expected
        row.status = REGRESSION if moved or fewer else OK
        rows.append(row)
    for key, (v, n) in got.items():
        kd = dict(zip(ENTRY_KEYS, key, strict=True))
        if key not in seen and kd["model"] in base.get("models", [kd["model"]]) and keep(kd["dataset"], kd["qf"]):
            rows.append(Row(kd, None, v, None, NEW, None, n))
    return rows


def render_rows(rows: list[Row], fmt: str = "simple") -> str:
    from tabulate import tabulate

    table = [[r.key["model"], r.key["setting"], r.key["dataset"], r.key["degradation"], r.key["qf"],
              r.key["space"], r.key["metric"], _fmt(r.expected), _fmt(r.got), _fmt(r.delta, signed=True),
              _fmt(r.tol), r.status] for r in rows]
    headers = ["model", "setting", "dataset", "degradation", "qf", "space", "metric", "expected", "got", "delta",
               "tol", "status"]
    return tabulate(table, headers=headers, tablefmt=fmt, disable_numparse=True)


# ----------------------------------------------------------------------------------------- running


def run_baseline(protocol_name: str, models: list[str], datasets: list[str], qfs: list[int], out: Path, *,
                 data_root: str | None = None, device: str = "cpu", sha256: str | None = None,
                 required: bool = True, log=lambda msg: print(msg, file=sys.stderr)) -> Path:
    """Run ``protocol_name`` restricted to ``models``/``datasets``/``qfs`` into ``out``. With ``required``
    an absent dataset is a data error (exit 2), not a silently smaller run."""
    from .inference import InferenceSettings
    from .models import create_model
    from .protocols import load_protocol
    from .runner import run_protocol

    protocol = load_protocol(protocol_name).select(datasets or None, qfs or None)
    if not protocol.jobs:
        raise ValueError(f"protocol {protocol_name!r} has no job for datasets {datasets} at QF {qfs}")
    if sha256 and protocol.sha256 != sha256:
        log(f"warning: protocol {protocol_name!r} changed since the baseline was made (sha256 "
            f"{protocol.sha256[:12]} vs {sha256[:12]}); comparing anyway")
    settings = InferenceSettings.named(protocol.setting)
    nets = {}
    for name in models:
        m = create_model(name, settings=settings, device=device)
        nets[m.info.name if name != m.info.name and ":" in name else name] = m
    run_protocol(protocol, nets, out, data_root=data_root, device=device, progress=False, log=log,
                 required_datasets=set(protocol.datasets) if required else set())
    return out


# ------------------------------------------------------------------------------------------- CLI


def _csv(text):
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _qfs(text):
    try:
        return [int(t) for t in text.split(",") if t.strip()] if text else None
    except ValueError:
        raise ValueError(f"--qf takes comma-separated integers, got {text!r}") from None


def add_regress_parser(subparsers) -> None:
    """Add ``cirbench regress`` to the main parser's subcommands."""
    r = subparsers.add_parser(
        "regress", help="compare a run with a baseline of golden numbers (exit 0 ok, 1 regression, 2 error)",
        description=__doc__.split("\n\n")[0])
    r.add_argument("run_dirs", nargs="*", metavar="RUN_DIR",
                   help="finished run to check (default: run the baseline's protocol now); with --update, "
                        "several runs of the same work measure the spread that sets the tolerances")
    r.add_argument("--baseline", required=True, help="baseline JSON (written with --update)")
    r.add_argument("--update", action="store_true", help="write --baseline from the run instead of comparing")
    r.add_argument("--data-root", help="data root (default: $CIRBENCH_DATA, else the user cache)")
    r.add_argument("--out", help="run directory when regress runs the protocol (default: a temporary one)")
    r.add_argument("--datasets", help="check only these datasets (comma-separated); with --update, the datasets")
    r.add_argument("--qf", help="check only these QFs (comma-separated); with --update, the QFs")
    r.add_argument("--protocol", help="--update without RUN_DIR: the protocol to run (default: the baseline's)")
    r.add_argument("--models", help="--update: comma-separated models (default: the baseline's, or all in RUN_DIR)")
    r.add_argument("--note", help="--update: how the baseline was made (stored in the file)")
    r.add_argument("--device", default="cpu")
    r.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    r.add_argument("--format", default="simple", help="tabulate format of the table (simple, github, ...)")
    for m in METRICS:
        r.add_argument(f"--tol-{m}", type=float, metavar="X",
                       help=f"tolerance for {m} (default: the baseline's; --update: {DEFAULT_TOLERANCE[m]})")
    r.set_defaults(func=cmd_regress)


def cmd_regress(args) -> int:
    """Compare (or, with --update, write) a baseline; returns the exit code."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    tol_override = {m: getattr(args, f"tol_{m}") for m in METRICS if getattr(args, f"tol_{m}") is not None}
    datasets, qfs = _csv(args.datasets), _qfs(args.qf)
    if args.update:
        return _update(args, tol_override, datasets, qfs)
    if len(args.run_dirs) > 1:
        raise ValueError("compare one RUN_DIR at a time (several are for --update)")
    base = load_baseline(args.baseline)
    unknown = [d for d in datasets or () if d not in base.get("datasets", [])]
    if unknown:
        raise ValueError(f"--datasets {','.join(unknown)}: not in the baseline ({', '.join(base['datasets'])})")
    with tempfile.TemporaryDirectory(prefix="cirbench-regress-") as tmp:
        if args.run_dirs:
            run_dir = Path(args.run_dirs[0])
            if not (run_dir / "records.jsonl").is_file():
                raise ValueError(f"{run_dir}: not a run directory (no records.jsonl)")
            name = read_run_info(run_dir).get("protocol", {}).get("name")
            if name not in (None, base["protocol"]):
                raise ValueError(f"{run_dir}: a run of protocol {name!r}, the baseline is of {base['protocol']!r}")
        else:
            run_dir = Path(args.out) if args.out else Path(tmp) / "run"
            run_baseline(base["protocol"], base["models"], datasets or base["datasets"], qfs or base["qfs"],
                         run_dir, data_root=args.data_root, device=args.device, sha256=base.get("protocol_sha256"))
        rows = compare(base, run_dir, tol_override=tol_override, datasets=datasets, qfs=qfs)
    print(render_rows(rows, args.format))
    bad = [r for r in rows if r.failing]
    new = sum(r.status == NEW for r in rows)
    checked = len(rows) - new
    if not checked:
        raise ValueError("nothing compared: the baseline has no entry for the selected datasets/QFs")
    if bad:
        print(f"\n{len(bad)} of {checked} baseline numbers regressed against {args.baseline}:", file=sys.stderr)
        for r in bad:
            print(f"  REGRESSION {r.describe()}", file=sys.stderr)
        return 1
    print(f"\nall {checked} baseline numbers within tolerance of {args.baseline}"
          + (f"; {new} new (not in the baseline)" if new else ""), file=sys.stderr)
    return 0


def _update(args, tol_override: dict, datasets, qfs) -> int:
    old = load_baseline(args.baseline) if Path(args.baseline).is_file() else None
    tolerance = {**DEFAULT_TOLERANCE, **(old or {}).get("tolerance", {}), **tol_override}
    note = args.note if args.note is not None else (old or {}).get("note", "")
    with tempfile.TemporaryDirectory(prefix="cirbench-regress-") as tmp:
        if args.run_dirs:
            run_dirs = [Path(d) for d in args.run_dirs]
            for d in run_dirs:
                if not (d / "records.jsonl").is_file():
                    raise ValueError(f"{d}: not a run directory (no records.jsonl)")
        else:
            protocol = args.protocol or (old or {}).get("protocol")
            models = _csv(args.models) or (old or {}).get("models")
            if not protocol or not models:
                raise ValueError("--update without RUN_DIR needs --protocol and --models (or an existing --baseline)")
            datasets = datasets or (old or {}).get("datasets")
            qfs = qfs or (old or {}).get("qfs")
            out = Path(args.out) if args.out else Path(tmp) / "run"
            # Datasets named (or in the old baseline) must be present; the protocol's full list may skip some.
            run_dirs = [run_baseline(protocol, models, datasets or [], qfs or [], out, data_root=args.data_root,
                                     device=args.device, required=bool(datasets))]
        # Filters apply to given runs; a run made here already holds just the selection.
        pick = dict(models=_csv(args.models), datasets=datasets, qfs=qfs) if args.run_dirs else {}
        base = make_baseline(run_dirs, tolerance=tolerance, note=note, **pick)
    write_baseline(base, args.baseline)
    print(f"wrote {args.baseline}: {len(base['entries'])} entries ({base['protocol']}; models "
          f"{', '.join(base['models'])}; datasets {', '.join(base['datasets'])}; QF "
          f"{', '.join(map(str, base['qfs']))}; tolerance {base['tolerance']}). Review it before committing.",
          file=sys.stderr)
    return 0
