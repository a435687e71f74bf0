"""``cirbench run``: dataset -> degrade -> model -> metrics -> records, resumable and sharded.

Work is ordered dataset, image, degradation, model, so each image is read and compressed once
for all models. Four stages overlap: reading and JPEG run ahead in a background thread, the model runs
in the main thread, metrics (and saved images) in ``SCORERS`` threads (NumPy and OpenCV release the GIL),
and records are written in order as each image's scores arrive. A run with a fast model (the JPEG input,
released outputs) is bound by its slowest stage, not by their sum; :class:`RunSummary` keeps each stage's
seconds. Records are appended and fsynced per image; a restarted run skips what is done.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import platform
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .. import __version__, jpeg
from ..errors import ConfigError, DatasetMissing, InvalidInputs, RunError
from ..files import FolderLock, atomic_write, dumps
from ..jpeg import Degradation
from ..metrics import DEFAULT_METRICS, Y_CONVENTION, Metric, image_metrics, resolve_metrics, spaces_of
from ..progress import Progress
from ..records import (
    RECORDS_FILE,
    RUN_FILE,
    RUN_SCHEMA,
    RecordWriter,
    gt_image_path,
    input_changes,
    output_image_path,
    read_run_info,
    recorded_metrics,
    refuse_links,
)
from ..zoo.restorer import Restorer, Target
from .datasets import Dataset, get_dataset, read_manifest
from .preflight import check_files, expected_output_shape, output_problem
from .protocols import Protocol

__all__ = ["RunError", "RunSummary", "run_protocol", "provenance", "parse_shard"]

@dataclass
class RunSummary:
    out_dir: Path
    written: int = 0  # records
    skipped_done: int = 0  # image x degradation x model results already recorded
    skipped_invalid: int = 0  # ... left out as invalid (--skip-invalid)
    images_only: int = 0  # ... recorded, run again only to save the output --save-images asks for
    skipped_datasets: dict[str, str] = field(default_factory=dict)
    nonfinite: list[str] = field(default_factory=list)
    model_seconds: float = 0.0
    wall_seconds: float = 0.0
    images: int = 0  # image x degradation x model forwards done by this run
    stages: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))  # busy seconds


STAGES = ("read", "jpeg", "model", "score", "write")
SCORERS = 2  # metric threads: two cores' worth, and a bound on the images waiting for scores


def _program() -> str:
    """``cirbench`` also under ``python -m cirbench`` and ``torchrun -m cirbench`` (argv[0] is then __main__.py)."""
    name = Path(sys.argv[0]).name
    return "cirbench" if name == "__main__.py" else name


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"K/N"`` (1-based) -> (K-1, N); None -> (0, 1)."""
    if not text:
        return 0, 1
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like K/N, got {text!r}") from None
    if not 1 <= k <= n:
        raise ConfigError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
    return k - 1, n


def _git_commit() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(protocol: Protocol, device: str, metrics: Sequence[Metric]) -> dict:
    """Everything needed to say how the numbers were made (run.json's static part)."""
    import PIL
    import skimage

    return {
        "schema": RUN_SCHEMA,
        "cirbench_version": __version__,
        "git_commit": _git_commit(),
        "protocol": {"name": protocol.name, "version": protocol.version, "sha256": protocol.sha256,
                     "give_qf": protocol.give_qf},
        "encoder": jpeg.encoder_info(),
        "metric_conventions": {"y": Y_CONVENTION, "rounding": "uint8", "border": 0},
        "metrics": [{"name": m.name, **m.info()} for m in metrics],  # a list: sort_keys keeps its order
        "libraries": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                      "pillow": PIL.__version__, "scikit-image": skimage.__version__},
        "device": device if device != "cpu" else f"cpu ({platform.processor() or platform.machine()})",
        "threads": torch.get_num_threads(),
        "command": " ".join([_program(), *sys.argv[1:]]),
    }


def _model_info(model: Restorer, label: str) -> dict:
    """A model's entry in run.json: what it is, and every input of it that changes a number (weights, the
    inference setting of its records' label, padding), which a resume must not change."""
    info = model.info
    entry = {"params": info.params, "description": info.description, **info.extra,
             "padding": {"multiple": info.pad_multiple, "mode": info.pad_mode}}
    if isinstance(info.extra.get("setting"), dict):
        entry["settings"] = {label: info.extra["setting"]}
    return entry


def _refuse_other_inputs(out: Path, old_models: dict, new_models: dict) -> None:
    """Records are keyed by model name and setting label, which name neither the weights nor the tiling,
    ensemble or padding: a resume that changes any of them would mix numbers, so it stops here. run.json keeps
    what each model's records were made with (entries of older runs lack some: those are not compared)."""
    for name, now in new_models.items():
        changed = input_changes(old_models.get(name) or {}, now)
        if changed:
            what = (f"other {changed[0]}" if len(changed) == 1 and changed[0].startswith("weights")
                    else f"other inputs: {'; '.join(changed)}")
            raise RunError(f"{out}: its records of model {name!r} were made with {what}; use another --out, or "
                           f"delete {out / RUN_FILE} and that model's records to redo them")


def _refuse_other_protocol(out: Path, old: dict, protocol: Protocol) -> None:
    """A folder holds one protocol's records: another name, version or file (sha256) is refused, never merged
    into run.json's provenance."""
    before = old.get("protocol") or {}
    if before.get("name") not in (None, protocol.name):
        raise RunError(f"{out}: holds a run of protocol {before['name']!r}; use another --out")
    for key, now in (("version", protocol.version), ("sha256", protocol.sha256)):
        if before.get(key) not in (None, now):
            was = before[key][:12] + "…" if key == "sha256" else before[key]
            raise RunError(f"{out}: holds a run of protocol {protocol.name!r} {key} {was}, not {key} "
                           f"{now[:12] + '…' if key == 'sha256' else now} ({protocol.path}): its records would be "
                           "mixed with another definition's; use another --out")


def _refuse_other_metrics(out: Path, old: dict, metrics: Sequence[Metric], has_records: bool) -> None:
    """Records are keyed without the metrics, so a resume with other metrics would leave holes: the records on
    disk must have been scored with exactly the metrics asked for now."""
    before = list(recorded_metrics(old, DEFAULT_METRICS if old else ()))
    now = [m.name for m in metrics]
    if has_records and before and set(before) != set(now):
        raise RunError(f"{out}: its records hold the metrics {','.join(before)}, not {','.join(now)}; rerun with "
                       f"--metrics {','.join(before)} to resume, or use another --out")


def _refuse_other_metric_setups(out: Path, old: dict, metrics: Sequence[Metric], has_records: bool) -> None:
    """A metric that holds a network records what it was built from (library versions, weight digests): a resume
    built from anything else would mix two metrics under one name. The device may change (the same weights)."""
    before = recorded_metrics(old)
    for m in metrics:
        was = {k: v for k, v in (before.get(m.name, {}).get("details") or {}).items() if k != "device"}
        now = {k: v for k, v in m.details.items() if k != "device"}
        changed = sorted(k for k in was.keys() & now.keys() if was[k] != now[k])
        if has_records and changed:
            raise RunError(f"{out}: its {m.name} records were made with another {', '.join(changed)} "
                           f"({str(was[changed[0]])[:80]} then, {str(now[changed[0]])[:80]} now); use another "
                           f"--out, or delete "
                           f"{out / RUN_FILE} and the records to redo them")


def _update_run_json(out_dir: Path, info: dict, drop: Sequence[str] = ()) -> None:
    path = refuse_links(out_dir, out_dir / RUN_FILE)
    old = read_run_info(out_dir)
    merged = {**old, **info}
    for k in ("models", "datasets", "skipped"):
        if k in old and k in info:
            merged[k] = {**old[k], **info[k]}
    for k in drop:
        merged.pop(k, None)
    atomic_write(path, dumps(merged, indent=2, sort_keys=True) + "\n")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@dataclass
class _Item:
    dataset: Dataset
    image: str
    gt: np.ndarray
    degradation: Degradation
    compressed: jpeg.Compressed

    @property
    def target(self) -> Target:
        d = self.degradation
        return Target(self.dataset.name, self.image, d.name, d.qf, d.qf1)


def _prefetch(gen: Iterator, depth: int = 2) -> Iterator:
    """Run a generator in a background thread, ``depth`` items ahead; re-raise its errors here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    sentinel = object()

    def worker():
        try:
            for item in gen:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(sentinel)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    t = threading.Thread(target=worker, daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is sentinel:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def run_protocol(
    protocol: Protocol,
    models: dict[str, Restorer],
    out_dir: str | os.PathLike,
    *,
    data_root: str | None = None,
    required_datasets: set[str] = frozenset(),
    shard: tuple[int, int] = (0, 1),
    device: str = "cpu",
    progress: bool | None = None,
    save_images: bool = False,
    skip_invalid: bool = False,
    metrics: Sequence[Metric] | None = None,
    trust_records: bool = False,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
) -> RunSummary:
    """Evaluate ``models`` on every (dataset, degradation) job of ``protocol`` into ``out_dir``, scoring
    ``metrics`` (default: the protocol's, else the default metrics) in every space that applies.

    One process at a time writes a run folder (a second is refused at once). Every input is checked before
    any model runs: problems stop the run (exit 2, nothing computed), or with ``skip_invalid`` the bad files
    are left out, named, and listed in run.json. Records without a run.json (their weights and settings
    unknown) are resumed only with ``trust_records``. run.json's ``status`` says how the run ended."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out)  # a fresh name: never through a link
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise RunError(f"{out}: output directory is not writable ({exc.strerror}); choose another --out") from None
    with FolderLock(out, "run"):
        if metrics is None:
            metrics = resolve_metrics(protocol.metrics or DEFAULT_METRICS, allow_code=False)
        return _run_locked(protocol, models, out, data_root=data_root, required_datasets=required_datasets,
                           shard=shard, device=device, progress=progress, save_images=save_images,
                           skip_invalid=skip_invalid, metrics=list(metrics), trust_records=trust_records, log=log)


def _run_locked(protocol: Protocol, models: dict[str, Restorer], out: Path, *, data_root, required_datasets,
                shard, device, progress, save_images, skip_invalid, metrics, trust_records, log) -> RunSummary:
    refuse_links(out, out / RUN_FILE)
    refuse_links(out, out / RECORDS_FILE)
    old = read_run_info(out)
    records_path = out / RECORDS_FILE
    has_records = records_path.is_file() and records_path.stat().st_size > 0
    if has_records and not old and not trust_records:
        raise RunError(f"{out}: holds records but no {RUN_FILE}, so what they were made with (weights, settings, "
                       "protocol) is unknown and a resume could mix numbers; use another --out, or pass "
                       "--trust-records to resume them as they are")
    _refuse_other_protocol(out, old, protocol)
    settings = {n: _setting_of(m) for n, m in models.items()}
    entries = {n: _model_info(m, settings[n]) for n, m in models.items()}
    _refuse_other_inputs(out, old.get("models") or {}, entries)
    _refuse_other_metrics(out, old, metrics, has_records)
    # Metrics that hold a network (pyiqa's) build it now, once for the run, on its device: their weights are
    # fetched and verified before any model runs, and run.json records what they loaded.
    metrics = [m.ready(device) for m in metrics]
    _refuse_other_metric_setups(out, old, metrics, has_records)
    summary = RunSummary(out)
    started = time.perf_counter()

    datasets: dict[str, Dataset] = {}
    for name in protocol.datasets:
        try:
            datasets[name] = get_dataset(name, data_root)
        except DatasetMissing as exc:
            if name in required_datasets:
                raise RunError(str(exc)) from None
            summary.skipped_datasets[name] = str(exc)
            log(f"skipped {exc}")
    jobs = [(d, g) for d, g in protocol.jobs if d in datasets]
    # Shard by image so every shard sees every degradation of its images (identical records to one run).
    work = [(datasets[d], name, path, g) for d, g in jobs for name, path in datasets[d]]
    order = {}
    for ds, name, _, _ in work:
        order.setdefault((ds.name, name), len(order))
    work = [w for w in work if order[(w[0].name, w[1])] % shard[1] == shard[0]]
    work, invalid_outputs, skipped_images, kinds = _preflight(work, models, skip_invalid, log)
    info = provenance(protocol, device, metrics)
    info["started"] = old.get("started") or _now()
    info["status"] = "running"
    info["shard"] = f"{shard[0] + 1}/{shard[1]}"
    for n, entry in entries.items():  # the settings of the labels already in the folder stay recorded
        old_settings = ((old.get("models") or {}).get(n) or {}).get("settings") or {}
        if "settings" in entry:
            entry["settings"] = {**old_settings, **entry["settings"]}
    info["models"] = entries
    labels = [d.name for d in datasets.values()]
    clash = sorted({n for n in labels if labels.count(n) > 1})
    if clash:
        raise RunError(f"two folder datasets are both labelled {clash[0]!r} (their folders' names); rename one folder")
    # gray_images / colour_images: what a gray or a colour column's mean should cover (a folder may hold both),
    # counted on the images checked; a shard's are its own part's (shard_*), which a merge adds up
    prefix = "" if shard == (0, 1) else "shard_"
    info["datasets"] = {d.name: {"images": len(d), "source": d.source, "manifest_sha256": d.manifest_sha256,
                                 **{prefix + k: v for k, v in kinds.get(d.name, {}).items()},
                                 **({"path": str(d.root)} if d.source == "folder" else {})}
                        for d in datasets.values()}
    info["skipped"] = summary.skipped_datasets
    info["skipped_images"] = {**old.get("skipped_images", {}), **skipped_images}
    info["images_saved"] = bool(save_images or old.get("images_saved"))
    writer = RecordWriter(out)  # before run.json changes: unreadable records stop the run here
    _update_run_json(out, info, drop=("finished", "stopped"))

    images_only: set[tuple] = set()  # recorded, but --save-images asks for an output that is not on disk
    counted = {"done": 0, "invalid": 0}

    def pending(ds: Dataset, name: str, deg: Degradation) -> list[str]:
        """Models still to run on this image: done means every space image_metrics scores it in is
        recorded (the image is not read yet, so either layout's set counts; a crash can leave some). A done
        model runs again only for an output --save-images asks for and the folder lacks (its records stay)."""
        todo = []
        for m in models:
            key = dict(model=m, setting=settings[m], dataset=ds.name, image=name, degradation=deg.name,
                       qf=deg.qf)
            done = any(all(writer.has(**key, space=s) for s in spaces_of(c)) for c in (1, 3))
            if (m, ds.name, name, deg) in invalid_outputs:
                counted["invalid"] += 1
            elif not done:
                todo.append(m)
            elif save_images and not output_image_path(out, m, settings[m], ds.name, deg.name, deg.qf, name).exists():
                images_only.add((m, ds.name, name, deg))
                todo.append(m)
            else:
                counted["done"] += 1
        return todo

    # What is still to do, decided before the first image: the bar starts at the work already on disk.
    todo_work = [(w, todo) for w in work if (todo := pending(w[0], w[1], w[3]))]
    summary.skipped_done, summary.skipped_invalid = counted["done"], counted["invalid"]
    summary.images_only = len(images_only)
    done_items = len(work) - len(todo_work)

    def produce() -> Iterator[tuple[_Item, list[str]]]:
        cache: tuple[str, np.ndarray] | None = None
        for (ds, name, path, deg), todo in todo_work:
            t0 = time.perf_counter()
            if cache is None or cache[0] != str(path) + str(ds.gray):
                # notes are dropped: the preflight listed each file's warnings once
                cache = (str(path) + str(ds.gray), ds.load(path, notes=[]))
            t1 = time.perf_counter()
            comp, gt = deg.apply(cache[1])
            summary.stages["read"] += t1 - t0
            summary.stages["jpeg"] += time.perf_counter() - t1
            yield _Item(ds, name, gt, deg, comp), todo

    bar = Progress(len(work), protocol.name, initial=done_items, enabled=False if progress is False else None)
    pool = ThreadPoolExecutor(max_workers=SCORERS)  # metrics beside the next forwards; written in order below
    pending_writes: list[Future] = []
    # Scored where the model ran when every metric can compute there (the batched tensor path on a GPU).
    metric_device = device if device != "cpu" and all(m.device == "any" for m in metrics) else None

    def score(item: _Item, model: str, restored) -> list[dict]:
        start = time.perf_counter()
        if restored.nonfinite:
            summary.nonfinite.append(f"{model} {item.dataset.name}/{item.image} {item.degradation.name} "
                                     f"qf{item.degradation.qf}")
        only_images = (model, item.dataset.name, item.image, item.degradation) in images_only
        per_space = {} if only_images else image_metrics(item.gt, restored.image, metrics=metrics,
                                                         device=metric_device)
        if save_images:
            _save_png(out, output_image_path(out, model, settings[model], item.dataset.name, item.degradation.name,
                                             item.degradation.qf, item.image), restored.image)
            gt_path = gt_image_path(out, item.dataset.name, item.degradation.name, item.image)
            if not gt_path.exists():
                _save_png(out, gt_path, item.gt)
        h, w = item.gt.shape[:2]
        recs = [{"model": model, "setting": settings[model], "dataset": item.dataset.name, "image": item.image,
                 "degradation": item.degradation.name, "qf": item.degradation.qf, "space": space,
                 **vals, "seconds": round(restored.seconds, 6), "height": h, "width": w,
                 "sha256": item.compressed.sha256, "nonfinite": restored.nonfinite, **restored.extras}
                for space, vals in per_space.items()]
        summary.stages["score"] += time.perf_counter() - start
        return recs

    def write(future: Future) -> None:
        recs = future.result()
        start = time.perf_counter()
        try:
            writer.write(recs)
        except OSError as exc:
            fix = "free disk space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "check the disk"
            raise RunError(f"{writer.path}: cannot write records ({exc.strerror or exc}); {fix} and rerun the "
                           "same command to resume (the records written so far are kept)") from None
        summary.written += len(recs)
        summary.stages["write"] += time.perf_counter() - start

    ended: BaseException | None = None
    try:
        for item, todo in _prefetch(produce()):
            for m in todo:
                qf = item.degradation.qf if protocol.give_qf else None
                extra = {"target": item.target} if getattr(models[m], "wants_target", False) else {}
                start = time.perf_counter()
                restored = models[m].restore(item.compressed.pixels, qf, **extra)
                summary.stages["model"] += time.perf_counter() - start
                summary.model_seconds += restored.seconds
                summary.images += 1
                pending_writes.append(pool.submit(score, item, m, restored))
            # In submission order, so records.jsonl is the same file whatever the threads' timing; waiting
            # for the oldest when many are queued bounds the images held in memory.
            while pending_writes and (pending_writes[0].done() or len(pending_writes) > 2 * SCORERS):
                write(pending_writes.pop(0))
            bar.update(1)
        while pending_writes:
            write(pending_writes.pop(0))
    except BaseException as exc:
        ended = exc
        raise
    finally:
        pool.shutdown(wait=True)
        if ended is not None:  # keep what was scored before the stop (Ctrl-C, an error): a rerun resumes after it
            try:
                while pending_writes:
                    write(pending_writes.pop(0))
            except Exception:  # the error that stopped the run is the one to report
                pass
        bar.close()
        summary.wall_seconds = time.perf_counter() - started
        timing = {"wall_seconds": round(summary.wall_seconds, 3), "model_seconds": round(summary.model_seconds, 3),
                  "stage_seconds": {k: round(v, 3) for k, v in summary.stages.items()}, "scorers": SCORERS,
                  "images": summary.images}
        if ended is None:
            end, drop = {"status": "finished", "finished": _now()}, ("stopped",)
        else:  # how it stopped, so no one reads a run that was cut short as finished
            status = "interrupted" if isinstance(ended, KeyboardInterrupt) else "failed"
            reason = str(ended).splitlines()[0] if str(ended).strip() else type(ended).__name__
            end, drop = {"status": status, "stopped": {"at": _now(), "reason": reason[:300]}}, ("finished",)
        try:
            writer.close()
            _update_run_json(out, {**end, "timing": timing}, drop=drop)
        except (OSError, RunError):
            if ended is None:  # else the error that stopped the run (e.g. a full disk) is the one to report
                raise
    if summary.nonfinite:
        log(f"warning: {len(summary.nonfinite)} outputs held NaN/Inf (flagged in records): "
            + "; ".join(summary.nonfinite[:3]))
    return summary


def _preflight(work: list, models: dict[str, Restorer], skip_invalid: bool, log: Callable[[str], None]):
    """Check every image (and released output) of ``work`` before any model runs. Returns the work without bad
    images, the (model, dataset, image, degradation) items whose output is unusable, the skipped files by
    dataset, and each dataset's count of usable gray and colour images; without ``skip_invalid`` any problem
    raises InvalidInputs listing them all."""
    verdicts = check_files(path for _, _, path, _ in work)
    _check_manifests(work, verdicts)
    readers = {n: m for n, m in models.items() if getattr(m, "wants_target", False)}
    outputs = {}
    if readers:
        wanted = {(n, ds.name, name, deg): (m.path(_Item(ds, name, None, deg, None).target), ds, path)
                  for ds, name, path, deg in work if verdicts[path].ok for n, m in readers.items()}
        _refuse_shared_outputs(readers, wanted)
        out_verdicts = check_files(o for o, _, _ in wanted.values())
        for key, (opath, ds, path) in wanted.items():
            want = expected_output_shape(verdicts[path].shape, key[3].shift)
            gray = ds.gray or len(verdicts[path].shape) == 2  # a gray set, or a gray file in a folder
            problem = output_problem(opath, out_verdicts[opath], want, gray)
            if problem:
                outputs[key] = problem
    for v in verdicts.values():
        for w in v.warnings:
            log(f"warning: {w}")
    bad = {p: v.error for p, v in verdicts.items() if not v.ok}
    problems = list(bad.values()) + list(dict.fromkeys(outputs.values()))
    if problems and not skip_invalid:
        raise InvalidInputs(f"{len(problems)} input file(s) cannot be evaluated, of {len(verdicts)} images checked "
                            "(listed above); fix them or pass --skip-invalid to run on the others. Nothing was "
                            "computed.", details=problems)
    skipped: dict[str, dict[str, str]] = {}
    for ds, name, path, _ in work:
        if path in bad:
            skipped.setdefault(ds.name, {})[name] = bad[path]
    for (n, ds_name, name, deg), problem in outputs.items():
        skipped.setdefault(ds_name, {})[f"{name} [{n} {deg.name} q{deg.qf}]"] = problem
    for problem in problems:
        log(f"skipped: {problem}")
    kinds: dict[str, dict[str, int]] = {}
    seen = set()
    for ds, _, path, _ in work:
        if path in bad or (ds.name, path) in seen:
            continue
        seen.add((ds.name, path))
        counts = kinds.setdefault(ds.name, {"gray_images": 0, "colour_images": 0})
        counts["gray_images" if ds.gray or len(verdicts[path].shape) == 2 else "colour_images"] += 1
    return [w for w in work if w[2] not in bad], set(outputs), skipped, kinds


def _check_manifests(work: list, verdicts: dict) -> None:
    """A standard set's file must be the one its packaged manifest names (by sha256, which the preflight has
    computed anyway): a replaced or edited image would be scored beside published numbers as if it were the
    original. A mismatch becomes that file's problem (refused, or left out and named with --skip-invalid)."""
    manifests: dict[str, dict] = {}
    for ds, name, path, _ in work:
        spec = ds.spec
        if spec is None or not spec.manifest or not verdicts[path].ok:
            continue
        rows = manifests.setdefault(spec.manifest, read_manifest(spec.manifest))
        want = (rows.get(name) or {}).get("sha256")
        if want and verdicts[path].sha256 != want:
            verdicts[path] = replace(verdicts[path], error=(
                f"{path}: not the {ds.name} file the packaged manifest names (its sha256 differs: replaced or "
                f"edited); restore it with `{spec.fetch_command}`, or pass --skip-invalid to leave it out"))


def _refuse_shared_outputs(readers: dict, wanted: dict) -> None:
    """An ``outputs:`` template must name one file per degradation: one that cannot tell QFs (or double JPEG's
    first QF) apart would score the same file in every column."""
    seen: dict[tuple, tuple] = {}
    for (n, ds_name, name, deg), (opath, _, _) in wanted.items():
        first = seen.setdefault((n, str(opath)), (deg, ds_name, name))
        if first[0] != deg:
            raise ConfigError(f"{n}: the template names one file, {opath}, for {first[0].label} and {deg.label} of "
                              f"{ds_name}/{name}, so every column would score the same output; add {{qf}} to the "
                              "template (and {qf1} or {degradation} for double JPEG)")


def _save_png(out: Path, path: Path, img: np.ndarray) -> None:
    from PIL import Image

    def write(fh) -> None:
        Image.fromarray(img).save(fh, format="PNG")

    refuse_links(out, path)  # the images folder (or one below it) could be a link to elsewhere
    try:
        atomic_write(path, write)
    except OSError as exc:
        fix = "free disk space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "check the disk"
        raise RunError(f"{path}: cannot save the image ({exc.strerror or exc}); {fix} and rerun the same command "
                       "to resume (the records written so far are kept)") from None


def _setting_of(model: Restorer) -> str:
    s = getattr(model, "settings", None)
    return s.label if s is not None else "single"
