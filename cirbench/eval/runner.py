"""``cirbench run``: dataset -> degrade -> model -> metrics -> records, resumable and sharded.

Work is ordered dataset, image, degradation, model, so each image is read and compressed once
for all models. Reading and JPEG run one image ahead in a background thread and metrics plus
record writing run in another, so the model forward is rarely kept waiting (issue 7's harness
overhead goal). Records are appended and fsynced per image; a restarted run skips what is done.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import platform
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__, jpeg
from ..errors import ConfigError, DatasetMissing, InvalidInputs, RunError
from ..files import FolderLock, atomic_write, dumps, loads
from ..jpeg import Degradation
from ..metrics import DEFAULT_METRICS, Y_CONVENTION, Metric, image_metrics, resolve_metrics, spaces_of
from ..records import (
    RECORDS_FILE,
    RUN_FILE,
    RUN_SCHEMA,
    RecordWriter,
    gt_image_path,
    output_image_path,
    recorded_metrics,
)
from ..zoo.restorer import Restorer, Target
from .datasets import Dataset, get_dataset
from .preflight import check_files, expected_output_shape, output_problem
from .protocols import Protocol

__all__ = ["RunError", "RunSummary", "run_protocol", "provenance", "parse_shard"]

@dataclass
class RunSummary:
    out_dir: Path
    written: int = 0
    skipped_done: int = 0
    skipped_datasets: dict[str, str] = field(default_factory=dict)
    nonfinite: list[str] = field(default_factory=list)
    model_seconds: float = 0.0
    wall_seconds: float = 0.0


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


def _refuse_other_weights(out: Path, old_models: dict, models: dict[str, Restorer]) -> None:
    """Resuming skips every key on disk, and a key does not name the weights: records of retrained weights
    would silently mix with the old ones. run.json keeps each model's weights sha256; a change stops here."""
    for name, model in models.items():
        before = old_models.get(name, {}).get("weights_sha256")
        now = model.info.extra.get("weights_sha256")
        if before is not None and now is not None and list(before) != list(now):
            raise RunError(f"{out}: its records of model {name!r} were made with other weights "
                           f"(sha256 {before[0][:12]}…, now {now[0][:12]}…); use another --out, "
                           f"or delete {out / RUN_FILE} and that model's records to redo them")


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


def _update_run_json(out_dir: Path, info: dict) -> None:
    path = out_dir / RUN_FILE
    old = loads(path.read_text()) if path.exists() else {}
    merged = {**old, **info}
    for k in ("models", "datasets", "skipped"):
        if k in old and k in info:
            merged[k] = {**old[k], **info[k]}
    atomic_write(path, dumps(merged, indent=2, sort_keys=True) + "\n")


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
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
) -> RunSummary:
    """Evaluate ``models`` on every (dataset, degradation) job of ``protocol`` into ``out_dir``, scoring
    ``metrics`` (default: the protocol's, else the default metrics) in every space that applies.

    One process at a time writes a run folder (a second is refused at once). Every input is checked before
    any model runs: problems stop the run (exit 2, nothing computed), or with ``skip_invalid`` the bad files
    are left out, named, and listed in run.json."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise RunError(f"{out}: output directory is not writable ({exc.strerror}); choose another --out") from None
    with FolderLock(out, "run"):
        if metrics is None:
            metrics = resolve_metrics(protocol.metrics or DEFAULT_METRICS, allow_code=False)
        return _run_locked(protocol, models, out, data_root=data_root, required_datasets=required_datasets,
                           shard=shard, device=device, progress=progress, save_images=save_images,
                           skip_invalid=skip_invalid, metrics=list(metrics), log=log)


def _run_locked(protocol: Protocol, models: dict[str, Restorer], out: Path, *, data_root, required_datasets,
                shard, device, progress, save_images, skip_invalid, metrics, log) -> RunSummary:
    from tqdm import tqdm

    old = loads((out / RUN_FILE).read_text()) if (out / RUN_FILE).exists() else {}
    if old.get("protocol", {}).get("name") not in (None, protocol.name):
        raise RunError(f"{out}: holds a run of protocol {old['protocol']['name']!r}; use another --out")
    _refuse_other_weights(out, old.get("models", {}), models)
    records_path = out / RECORDS_FILE
    _refuse_other_metrics(out, old, metrics, records_path.is_file() and records_path.stat().st_size > 0)
    # Metrics that hold a network (pyiqa's) build it now, once for the run, on its device: their weights are
    # fetched and verified before any model runs, and run.json records what they loaded.
    metrics = [m.ready(device) for m in metrics]
    _refuse_other_metric_setups(out, old, metrics, records_path.is_file() and records_path.stat().st_size > 0)
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
    settings = {n: _setting_of(m) for n, m in models.items()}
    work, invalid_outputs, skipped_images = _preflight(work, models, skip_invalid, log)
    info = provenance(protocol, device, metrics)
    info["started"] = old.get("started") or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    info["shard"] = f"{shard[0] + 1}/{shard[1]}"
    info["models"] = {n: {"params": m.info.params, "description": m.info.description, **m.info.extra}
                      for n, m in models.items()}
    labels = [d.name for d in datasets.values()]
    clash = sorted({n for n in labels if labels.count(n) > 1})
    if clash:
        raise RunError(f"two folder datasets are both labelled {clash[0]!r} (their folders' names); rename one folder")
    info["datasets"] = {d.name: {"images": len(d), "source": d.source, "manifest_sha256": d.manifest_sha256,
                                 **({"path": str(d.root)} if d.source == "folder" else {})}
                        for d in datasets.values()}
    info["skipped"] = summary.skipped_datasets
    info["skipped_images"] = {**old.get("skipped_images", {}), **skipped_images}
    info["images_saved"] = bool(save_images or old.get("images_saved"))
    _update_run_json(out, info)
    writer = RecordWriter(out)

    def pending(ds: Dataset, name: str, deg: Degradation) -> list[str]:
        """Models still to run on this image: done means every space image_metrics scores it in is
        recorded (the image is not read yet, so either layout's set counts; a crash can leave some)."""
        todo = []
        for m in models:
            key = dict(model=m, setting=settings[m], dataset=ds.name, image=name, degradation=deg.name,
                       qf=deg.qf)
            done = any(all(writer.has(**key, space=s) for s in spaces_of(c)) for c in (1, 3))
            if not done and (m, ds.name, name, deg) not in invalid_outputs:
                todo.append(m)
        return todo

    # What is still to do, decided before the first image: the bar starts at the work already on disk.
    todo_work = [(w, todo) for w in work if (todo := pending(w[0], w[1], w[3]))]
    summary.skipped_done = len(work) - len(todo_work)

    def produce() -> Iterator[tuple[_Item, list[str]]]:
        cache: tuple[str, np.ndarray] | None = None
        for (ds, name, path, deg), todo in todo_work:
            if cache is None or cache[0] != str(path) + str(ds.gray):
                # notes are dropped: the preflight listed each file's warnings once
                cache = (str(path) + str(ds.gray), ds.load(path, notes=[]))
            comp, gt = deg.apply(cache[1])
            yield _Item(ds, name, gt, deg, comp), todo

    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=len(work), initial=summary.skipped_done, disable=not show, desc=f"{protocol.name}",
               unit="img", file=sys.stderr)
    pool = ThreadPoolExecutor(max_workers=1)  # metrics + writing, in order, beside the next forward
    pending_writes: list[Future] = []

    def score(item: _Item, model: str, restored) -> None:
        if restored.nonfinite:
            summary.nonfinite.append(f"{model} {item.dataset.name}/{item.image} {item.degradation.name} "
                                     f"qf{item.degradation.qf}")
        per_space = image_metrics(item.gt, restored.image, metrics=metrics)
        if save_images:
            _save_png(output_image_path(out, model, settings[model], item.dataset.name, item.degradation.name,
                                        item.degradation.qf, item.image), restored.image)
            gt_path = gt_image_path(out, item.dataset.name, item.degradation.name, item.image)
            if not gt_path.exists():
                _save_png(gt_path, item.gt)
        h, w = item.gt.shape[:2]
        recs = [{"model": model, "setting": settings[model], "dataset": item.dataset.name, "image": item.image,
                 "degradation": item.degradation.name, "qf": item.degradation.qf, "space": space,
                 **vals, "seconds": round(restored.seconds, 6), "height": h, "width": w,
                 "sha256": item.compressed.sha256, "nonfinite": restored.nonfinite, **restored.extras}
                for space, vals in per_space.items()]
        try:
            writer.write(recs)
        except OSError as exc:
            fix = "free disk space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "check the disk"
            raise RunError(f"{writer.path}: cannot write records ({exc.strerror or exc}); {fix} and rerun the "
                           "same command to resume (the records written so far are kept)") from None
        summary.written += len(recs)

    failed = True
    try:
        for item, todo in _prefetch(produce()):
            for m in todo:
                qf = item.degradation.qf if protocol.give_qf else None
                extra = {"target": item.target} if getattr(models[m], "wants_target", False) else {}
                restored = models[m].restore(item.compressed.pixels, qf, **extra)
                summary.model_seconds += restored.seconds
                pending_writes.append(pool.submit(score, item, m, restored))
            while pending_writes and pending_writes[0].done():
                pending_writes.pop(0).result()
            bar.update(1)
        for f in pending_writes:
            f.result()
        failed = False
    finally:
        pool.shutdown(wait=True)
        bar.close()
        summary.wall_seconds = time.perf_counter() - started
        try:
            writer.close()
            _update_run_json(out, {"finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                                   "timing": {"wall_seconds": round(summary.wall_seconds, 3),
                                              "model_seconds": round(summary.model_seconds, 3)}})
        except OSError:
            if not failed:  # else the error that stopped the run (e.g. a full disk) is the one to report
                raise
    if summary.nonfinite:
        log(f"warning: {len(summary.nonfinite)} outputs held NaN/Inf (flagged in records): "
            + "; ".join(summary.nonfinite[:3]))
    return summary


def _preflight(work: list, models: dict[str, Restorer], skip_invalid: bool, log: Callable[[str], None]):
    """Check every image (and released output) of ``work`` before any model runs. Returns the work without bad
    images, the (model, dataset, image, degradation) items whose output is unusable, and the skipped files by
    dataset; without ``skip_invalid`` any problem raises InvalidInputs listing them all."""
    verdicts = check_files(path for _, _, path, _ in work)
    readers = {n: m for n, m in models.items() if getattr(m, "wants_target", False)}
    outputs = {}
    if readers:
        wanted = {(n, ds.name, name, deg): (m.path(_Item(ds, name, None, deg, None).target), ds, path)
                  for ds, name, path, deg in work if verdicts[path].ok for n, m in readers.items()}
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
    return [w for w in work if w[2] not in bad], set(outputs), skipped


def _save_png(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    def write(fh) -> None:
        Image.fromarray(img).save(fh, format="PNG")

    atomic_write(path, write)


def _setting_of(model: Restorer) -> str:
    s = getattr(model, "settings", None)
    return s.label if s is not None else "single"
