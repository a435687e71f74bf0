"""The record contract between evaluation and reports: per-image records and the run's provenance.

A run folder holds ``records.jsonl`` (one JSON object per line, appended and synced as they are made) and
``run.json`` (:class:`RunInfo`: provenance, and the spec of every metric the run computed). Every report,
plot and regression check is computed from these two files alone; this module is the only code both sides
share, and it imports nothing but ``errors`` and ``files``.

A record (:class:`Record`) has the fields in ``FIELDS``, one value per metric computed in its space (named as
the metric: ``psnr``, ``ssim``, a user's ``mae``; run.json's ``metrics`` lists them), and may carry extra
fields (e.g. FBCNN's ``qf_pred``).
Records are keyed by ``KEY`` (one record per image, degradation, metric space, model setting);
a run that is restarted skips every key already present. A final line cut short by a crash is
ignored on read and truncated away before the next append, so nothing partial survives. Any other
malformed line (a disk error, a hand edit) is an error naming the file and the line: never a silent drop.
Files a run writes are never reached through a symbolic link (a link is refused, not followed), so a run
folder cannot be made to truncate or overwrite a file elsewhere.
:func:`check_run` validates a whole run folder (``cirbench records check``).
"""

from __future__ import annotations

import errno
import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypedDict

from .errors import RunError
from .files import dumps, from_json, loads

__all__ = ["FIELDS", "KEY", "GROUP", "RUN_SCHEMA", "Record", "RunInfo", "RecordWriter", "iter_records",
           "read_records", "read_run_info", "recorded_metrics", "output_image_path", "gt_image_path", "check_run",
           "json_problem", "refuse_links", "ENDED", "model_settings", "input_changes"]

RECORDS_FILE = "records.jsonl"
RUN_FILE = "run.json"
IMAGES_DIR = "images"  # ``cirbench run --save-images``: outputs and ground truths, as lossless PNG

FIELDS = (
    "model",  # model name as run (card name, or a user label)
    "setting",  # inference setting: "single", "ntire24", ... (never mixed in one mean)
    "dataset",
    "image",  # file name inside the dataset
    "degradation",  # "jpeg", or "double-q{QF1}-s{dy}x{dx}" for double JPEG
    "qf",  # the (last) JPEG quality factor
    "space",  # "y", "y-float", "y-full", "rgb" or "gray"
    "seconds",  # wall time of the model on this image (0 for the jpeg baseline)
    "height",
    "width",
    "sha256",  # of the compressed JPEG bytes the model saw
    "nonfinite",  # the model output held NaN or Inf (they are zeroed before rounding)
)
KEY = ("model", "setting", "dataset", "image", "degradation", "qf", "space")
GROUP = ("model", "setting", "dataset", "degradation", "qf", "space")
# run.json's layout version: 2 added the schema field itself, models' profiles and saved images; 3 the
# ``metrics`` specs (a run of schema 2 or less recorded the default metrics, which callers name); 4 how the
# run ended (``status``), each model's inference setting and padding (a resume with others is refused).
RUN_SCHEMA = 4
# run.json's ``status``: how the last run into the folder ended (a folder being written says "running").
ENDED = ("finished", "interrupted", "failed", "running")


class Record(TypedDict, total=False):
    """One image x degradation x metric space x model setting; plus one float per metric computed."""

    model: str
    setting: str
    dataset: str
    image: str
    degradation: str
    qf: int
    space: str
    seconds: float
    height: int
    width: int
    sha256: str
    nonfinite: bool


class RunInfo(TypedDict, total=False):
    """``run.json``: how the numbers were made."""

    schema: int
    cirbench_version: str
    git_commit: str | None
    protocol: dict  # name, version, sha256, give_qf
    encoder: dict
    metric_conventions: dict
    metrics: list[dict]  # each metric's spec (name, label, unit, decimals, higher_is_better, spaces, ...), in order
    libraries: dict
    device: str
    threads: int
    command: str
    started: str
    finished: str  # when the run finished (absent while running or after an interruption)
    status: str  # one of ENDED
    stopped: dict  # when and why a run that did not finish stopped
    shard: str
    models: dict[str, dict]  # name -> params, description, card, weights sha256, profile...
    datasets: dict[str, dict]  # name -> images, source, manifest sha256
    skipped: dict[str, str]
    skipped_images: dict[str, dict[str, str]]
    images_saved: bool
    timing: dict


def recorded_metrics(info: dict, legacy: Sequence[str] = ()) -> dict[str, dict]:
    """The metrics a run recorded, name -> spec, in order; a run from before specs were written recorded
    ``legacy``."""
    metrics = info.get("metrics") if isinstance(info, dict) else None
    if isinstance(metrics, list) and metrics:
        return {str(m["name"]): {k: v for k, v in m.items() if k != "name"} for m in metrics
                if isinstance(m, dict) and "name" in m}
    return {m: {} for m in legacy}


# A setting's fields that never change a number (the memory layout).
_NEUTRAL = ("channels_last",)


def model_settings(entry: dict) -> dict[str, dict]:
    """A run.json model entry's inference settings by record label ({"single": {...}, "ntire24": {...}}): one
    model name may run in several settings into one folder, each its own records. Entries of runs before
    schema 4 hold one ``setting``, labelled as the records are (its name, plus ``+precision`` unless fp32)."""
    entry = entry if isinstance(entry, dict) else {}
    out = {k: v for k, v in (entry.get("settings") or {}).items() if isinstance(v, dict)}
    old = entry.get("setting")
    if not out and isinstance(old, dict) and "name" in old:
        label = old["name"] if old.get("precision", "fp32") == "fp32" else f"{old['name']}+{old['precision']}"
        out[label] = old
    return {label: {k: v for k, v in s.items() if k not in _NEUTRAL} for label, s in out.items()}


def input_changes(before: dict, now: dict) -> list[str]:
    """How two run.json entries of one model name differ in what changes its numbers, in words (empty: they
    agree): the weights, the padding, and the inference setting of any record label both hold. What one entry
    does not record (an older run) is not compared."""
    before, now = (e if isinstance(e, dict) else {} for e in (before, now))
    out = []
    old_sha, new_sha = before.get("weights_sha256"), now.get("weights_sha256")
    if old_sha is not None and new_sha is not None and list(old_sha) != list(new_sha):
        out.append(f"weights (sha256 {str(old_sha[0])[:12] if old_sha else '-'}…, now "
                   f"{str(new_sha[0])[:12] if new_sha else '-'}…)")
    a, b = model_settings(before), model_settings(now)
    for label in sorted(a.keys() & b.keys()):
        out += [f"{k} {a[label].get(k)!r} (now {b[label].get(k)!r})" for k in sorted(a[label].keys() | b[label].keys())
                if a[label].get(k) != b[label].get(k)]
    if isinstance(before.get("padding"), dict) and isinstance(now.get("padding"), dict) \
            and before["padding"] != now["padding"]:
        out.append(f"padding {before['padding']} (now {now['padding']})")
    return out


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.+@" else "_" for c in str(text))


def output_image_path(run_dir: str | os.PathLike, model: str, setting: str, dataset: str, degradation: str,
                      qf: int, image: str) -> Path:
    """Where ``--save-images`` puts a model's output: ``images/MODEL[@SETTING]/DATASET/DEG-qQF/STEM.png``."""
    label = model if setting == "single" else f"{model}@{setting}"
    return (Path(run_dir) / IMAGES_DIR / _safe(label) / _safe(dataset) / f"{_safe(degradation)}-q{int(qf)}"
            / (Path(image).stem + ".png"))


def gt_image_path(run_dir: str | os.PathLike, dataset: str, degradation: str, image: str) -> Path:
    """The ground truth an output was scored against (cropped for shifted double JPEG)."""
    return Path(run_dir) / IMAGES_DIR / "_gt" / _safe(dataset) / _safe(degradation) / (Path(image).stem + ".png")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _key(rec: dict) -> tuple:
    return tuple(rec[k] for k in KEY)


def json_problem(exc: ValueError) -> str:
    """A JSON or UTF-8 decoding error in words, with where it is (json's own message for a control character
    ends in a dangling "at")."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg.removesuffix(' at')} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
    return str(exc)


def _lines(path: Path) -> Iterator[tuple[int, dict | str]]:
    """(line number, record) per complete line, or (line number, problem) for a malformed one."""
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):
                return  # the write of this last line never finished: truncated away before the next append
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                problem = json_problem(exc)
                yield n, f"not JSON ({problem.replace(' at line 1 column', ' at column')})"
                continue
            if not isinstance(rec, dict):
                yield n, "not a JSON object"
                continue
            problem = _key_problem(rec)
            if problem:
                yield n, problem
                continue
            yield n, {k: from_json(v) for k, v in rec.items()}


def _key_problem(rec: dict) -> str | None:
    """Why a record cannot be matched to its key (resume, merge, report), or None: every KEY field present,
    the QF an integer and the others strings."""
    lacking = [k for k in KEY if k not in rec]
    if lacking:
        return f"lacks {', '.join(lacking)}"
    bad = [k for k in KEY if not (isinstance(rec[k], int) and not isinstance(rec[k], bool) if k == "qf"
                                  else isinstance(rec[k], str))]
    return f"{', '.join(bad)} of the wrong type" if bad else None


def iter_records(path: str | os.PathLike) -> Iterator[dict]:
    """Yield the records of a records file; a torn final line is skipped, any other malformed line is a
    RunError naming the file and the line."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORDS_FILE
    if not path.exists():
        return
    for n, rec in _lines(path):
        if isinstance(rec, str):
            raise RunError(f"{path}:{n}: malformed record ({rec}); restore the file from a backup, or delete that "
                           "line and rerun to recompute it (`cirbench records check` lists every problem)")
        yield rec


def read_records(run_dirs: str | os.PathLike | Iterable[str | os.PathLike]):
    """All records of one or more run directories as a pandas DataFrame (one row per record)."""
    import pandas as pd

    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    rows = []
    for d in run_dirs:
        for rec in iter_records(d):
            rec.setdefault("run", str(d))
            rows.append(rec)
    return pd.DataFrame(rows, columns=None if rows else list(FIELDS))


def read_run_info(run_dir: str | os.PathLike) -> RunInfo:
    """The provenance of a run (``run.json``), or {} if it has none yet; a file that is not a JSON object is a
    RunError naming it."""
    p = Path(run_dir) / RUN_FILE
    if not p.exists():
        return {}
    try:
        info = loads(p.read_bytes())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
        raise RunError(f"{p}: malformed run.json ({json_problem(exc)}); restore it from a backup, or use another "
                       "run folder (without it the records' provenance is lost)") from None
    except OSError as exc:
        raise RunError(f"{p}: cannot read run.json ({exc.strerror or exc})") from None
    if not isinstance(info, dict):
        raise RunError(f"{p}: malformed run.json (a JSON {type(info).__name__}, not an object); restore it from a "
                       "backup, or use another run folder")
    return info


def refuse_links(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """``path`` (inside run folder ``root``) when no part of it below ``root`` is a symbolic link; a run writes
    only files it owns, so a link (to a file or a folder elsewhere) is an error naming it, never followed."""
    root, path = Path(root), Path(path)
    p = root
    for part in path.relative_to(root).parts:
        p = p / part
        if p.is_symlink():
            raise RunError(f"{p}: is a symbolic link (to {os.readlink(p)}); cirbench writes only files it owns in a "
                           "run folder and never follows a link there: remove the link, or use another --out")
    return path


class RecordWriter:
    """Append-only record file that survives ``kill -9``: each batch is flushed and fsynced. The file is opened
    without following a link (O_NOFOLLOW): a records.jsonl that is a link is refused before anything is cut."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / RECORDS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        refuse_links(self.path.parent, self.path)
        self._repair()
        self.done = set()
        for n, rec in _lines(self.path) if self.path.exists() else ():
            if isinstance(rec, str):  # e.g. a record without its dataset: it could not be matched on resume
                raise RunError(f"{self.path}:{n}: malformed record ({rec}); restore the file from a backup, or "
                               "delete that line and rerun to recompute it (`cirbench records check` lists every "
                               "problem)")
            self.done.add(_key(rec))
        self._fh = self._open("a")

    def _open(self, mode: str):
        flags = {"a": os.O_WRONLY | os.O_APPEND | os.O_CREAT, "r+": os.O_RDWR}[mode]
        try:
            fd = os.open(self.path, flags | getattr(os, "O_NOFOLLOW", 0), 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a link put there after the check
                refuse_links(self.path.parent, self.path)
            fix = "make it writable" if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else "check the disk"
            raise RunError(f"{self.path}: cannot write records ({exc.strerror or exc}); {fix} and rerun the same "
                           "command, or use another --out") from None
        return os.fdopen(fd, "ab" if mode == "a" else "r+b")

    def _repair(self) -> None:
        # Cut a torn last line so the next append starts on a fresh line.
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with self._open("r+") as fh:
                fh.truncate(keep)
                fh.flush()
                os.fsync(fh.fileno())

    def has(self, **key) -> bool:
        return tuple(key[k] for k in KEY) in self.done

    def write(self, records: Iterable[dict]) -> None:
        """Append records whose key is not yet on disk, then flush and fsync."""
        lines, keys = [], set()
        for rec in records:
            if _key(rec) in self.done or _key(rec) in keys:
                continue  # already on disk (a resumed image whose batch was half written)
            missing = [f for f in FIELDS if f not in rec]
            if missing:
                raise ValueError(f"record lacks fields {missing}")
            lines.append(dumps(rec) + "\n")
            keys.add(_key(rec))
        self._fh.write("".join(lines).encode("utf-8"))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.done |= keys  # only once on disk: a batch refused half-way marks nothing done

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def check_run(run_dir: str | os.PathLike, legacy_metrics: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """Validate a run folder: every line parses, records have the schema's fields, a number (not NaN) for every
    metric run.json lists in their space (``legacy_metrics`` for runs older than the list), no key is recorded
    twice, every dataset is one run.json announces, and each (model, dataset, degradation, QF) covers the images
    it announces (else a note: a mean over them is partial); a run that did not finish is noted. Returns
    (errors, notes)."""
    run = Path(run_dir)
    path = run / RECORDS_FILE
    if not path.is_file():
        return [f"{path}: not found (not a run folder)"], []
    errors, notes = [], []
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        notes.append(f"{path}: the last line is cut short (a killed run); the next run removes it")
    try:
        info = read_run_info(run) if (run / RUN_FILE).is_file() else {}
    except RunError as exc:
        errors.append(str(exc))
        info = {}
    metrics = recorded_metrics(info, legacy_metrics)
    seen: dict[tuple, int] = {}
    images: dict[tuple, set] = {}
    for n, rec in _lines(path):
        if isinstance(rec, str):
            errors.append(f"{path}:{n}: {rec}")
            continue
        missing = [f for f in FIELDS if f not in rec]
        if missing:
            errors.append(f"{path}:{n}: lacks {', '.join(missing)}")
            continue
        wanted = [m for m, spec in metrics.items() if rec["space"] in spec.get("spaces", [rec["space"]])]
        absent = [m for m in wanted if m not in rec]
        if absent:
            errors.append(f"{path}:{n}: lacks {', '.join(absent)}")
            continue
        bad = [f for f in (*wanted, "seconds") if not _number(rec[f])]
        bad += [f for f in ("qf", "height", "width") if not isinstance(rec[f], int) or isinstance(rec[f], bool)]
        if bad:
            errors.append(f"{path}:{n}: {', '.join(bad)} of the wrong type")
            continue
        nan = [m for m in wanted if isinstance(rec[m], float) and math.isnan(rec[m])]
        if nan:
            errors.append(f"{path}:{n}: {', '.join(nan)} is NaN (not a number): a mean over it is undefined; "
                          "rerun that image, or find why the metric failed")
        key = tuple(rec[k] for k in KEY)
        if key in seen:
            errors.append(f"{path}:{n}: duplicate of line {seen[key]} ({'/'.join(map(str, key))})")
            continue
        seen[key] = n
        images.setdefault(tuple(rec[k] for k in ("model", "setting", "dataset", "degradation", "qf")),
                          set()).add(rec["image"])
    if not (run / RUN_FILE).is_file():
        errors.append(f"{run / RUN_FILE}: missing: the run's provenance is lost")
    announced = {d: (v or {}).get("images") for d, v in (info.get("datasets") or {}).items()}
    if info:
        strays = sorted({k[2] for k in images} - set(announced))
        if strays:
            errors.append(f"{path}: records of dataset(s) {', '.join(strays)}, which {RUN_FILE} does not list "
                          "(appended from another run?): their means would cover an unknown share of the set")
    status = info.get("status")
    if status in ("interrupted", "failed"):
        why = (info.get("stopped") or {}).get("reason", "")
        notes.append(f"{run / RUN_FILE}: the last run into this folder was {status}"
                     + (f" ({why})" if why else "") + "; rerun the same command to complete it")
    elif status == "running":  # no end recorded: killed (kill -9, a power cut), or still at work
        notes.append(f"{run / RUN_FILE}: the last run into this folder recorded no end (killed, or still running); "
                     "rerun the same command to complete it")
    skipped = {d: len(v) for d, v in info.get("skipped_images", {}).items()}
    whole = info.get("shard", "1/1") == "1/1"  # a shard covers a part of each dataset by design
    for (model, _, dataset, deg, qf), imgs in sorted(images.items(), key=str):
        want = announced.get(dataset)
        if whole and want is not None and len(imgs) < want - skipped.get(dataset, 0):
            notes.append(f"{model} {dataset} {deg} QF {qf}: {len(imgs)} of {want} images "
                         f"({skipped.get(dataset, 0)} skipped): an unfinished run (rerun it to complete)")
    unknown_models = {k[0] for k in images} - set(info.get("models", {}))
    if info and unknown_models:
        errors.append(f"{run / RUN_FILE}: has no entry for model(s) {', '.join(sorted(unknown_models))}")
    return errors, notes
