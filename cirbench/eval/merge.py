"""Merging the records of shard runs (``cirbench run --shard K/N``, or the ranks of a torchrun run) into one
run folder.

Shards split a protocol by image, so their records are disjoint; the merge keeps the first copy of any key
present twice, orders records canonically (by ``records.KEY``) and combines the provenance, so one report
covers the whole protocol. Runs whose records of one model name were made with other weights, inference
settings or padding are refused: their numbers would be mixed under one name. Both files are written
atomically: an interrupted merge leaves no partial run.
Images saved by ``--save-images`` are gathered too (hard links where possible), so crops work on the merge.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..errors import RunError
from ..files import FolderLock, atomic_write, dumps
from ..metrics import DEFAULT_METRICS
from ..records import (
    FIELDS,
    IMAGES_DIR,
    KEY,
    RECORDS_FILE,
    RUN_FILE,
    input_changes,
    iter_records,
    read_run_info,
    recorded_metrics,
    refuse_links,
)

__all__ = ["merge_runs", "canonical"]


def canonical(records: list[dict]) -> list[dict]:
    """Records in canonical order, without duplicates (first copy wins)."""
    seen, out = set(), []
    for r in records:
        k = tuple(r[f] for f in KEY)
        if k not in seen:
            seen.add(k)
            out.append(r)
    return sorted(out, key=lambda r: tuple(str(r[f]) if f != "qf" else f"{r[f]:03d}" for f in KEY))


def merge_runs(run_dirs: list[str | os.PathLike], out_dir: str | os.PathLike, *, replace: bool = False,
               lock_out: bool = True) -> int:
    """Merge run folders into ``out_dir``; returns the number of records written. The output (unless the caller
    holds its lock) and every input are locked for the merge: a shard still being written is refused.
    ``replace`` rewrites an earlier merge (a resumed torchrun run)."""
    with contextlib.ExitStack() as stack:
        if lock_out:
            stack.enter_context(FolderLock(out_dir, "merge"))
        for d in run_dirs:
            stack.enter_context(FolderLock(d, "merge"))
        return _merge(run_dirs, Path(out_dir), replace)


def _merge(run_dirs: list[str | os.PathLike], out: Path, replace: bool) -> int:
    infos = [read_run_info(d) for d in run_dirs]
    protocols = {(i.get("protocol") or {}).get("sha256") for i in infos if i}
    if len(protocols) > 1:
        raise RunError("cannot merge runs of different protocol files: " + ", ".join(map(str, run_dirs)))
    metric_sets = {tuple(sorted(recorded_metrics(i, DEFAULT_METRICS))) for i in infos if i}
    if len(metric_sets) > 1:
        raise RunError("cannot merge runs scored with different metrics (" + "; ".join(",".join(m) for m in
                       sorted(metric_sets)) + "): " + ", ".join(map(str, run_dirs)))
    _refuse_other_inputs(run_dirs, infos)
    if (out / RECORDS_FILE).exists() and not replace:
        raise RunError(f"{out}: already holds records; merge into a new folder")
    records = []
    for d in run_dirs:
        for n, r in enumerate(iter_records(d), 1):
            missing = [f for f in FIELDS if f not in r]
            if missing:
                raise RunError(f"{Path(d) / RECORDS_FILE}: record #{n} lacks {', '.join(missing)}; restore the file, "
                               "or delete that line and rerun that shard (`cirbench records check` lists every "
                               "problem)")
            records.append(r)
    records = canonical(records)
    info = dict(infos[0]) if infos else {}
    for i in infos[1:]:
        for k in ("models", "datasets", "skipped"):
            info[k] = {**info.get(k, {}), **i.get(k, {})}
    for name, entry in (info.get("models") or {}).items():  # every label's setting, from every run
        labels = {lab: s for i in infos for lab, s in (((i.get("models") or {}).get(name) or {}).get("settings")
                                                        or {}).items()}
        if labels:
            info["models"][name] = {**entry, "settings": labels}
    info["datasets"] = _datasets(infos) if infos else {}
    info["merged_from"] = [{"run": str(d), "shard": i.get("shard"), "status": i.get("status")}
                           for d, i in zip(run_dirs, infos, strict=True)]
    info.pop("shard", None)
    statuses = [i.get("status") for i in infos if i.get("status")]
    if statuses:  # the merge is finished only when every part is
        info["status"] = next((s for s in ("failed", "interrupted", "running") if s in statuses), "finished")
    try:
        atomic_write(out / RECORDS_FILE, "".join(dumps(r) + "\n" for r in records))
        atomic_write(out / RUN_FILE, dumps(info, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise RunError(f"{out}: cannot write the merged run ({exc.strerror or exc}); the files there are as they were "
                       "(each is replaced whole or not at all): free space and rerun the merge") from None
    try:
        for d in run_dirs:
            _gather_images(Path(d) / IMAGES_DIR, out / IMAGES_DIR)
    except OSError as exc:  # a link in the way is a RunError of its own, said as such
        raise RunError(f"{out}: records merged, but saved images could not be gathered ({exc.strerror or exc}); "
                       "free space and rerun the merge (images already gathered are kept)") from None
    return len(records)


def _refuse_other_inputs(run_dirs: list, infos: list[dict]) -> None:
    """One model name must mean one set of inputs (weights, padding, each label's inference setting)."""
    first: dict[str, tuple] = {}
    for d, info in zip(run_dirs, infos, strict=True):
        for name, entry in (info.get("models") or {}).items():
            seen = first.setdefault(name, (d, entry or {}))
            changed = input_changes(seen[1], entry or {})
            if changed:
                raise RunError(f"cannot merge: model {name!r} was run with other inputs in {d} than in {seen[0]} "
                               f"({'; '.join(changed)}); their numbers would be mixed under one name: merge runs of "
                               "the same model only, or rerun one of them")


def _datasets(infos: list[dict]) -> dict:
    """run.json's datasets of the merge: each shard counted its own gray and colour images (shard_*), so the
    whole set's are their sums, when every part that holds the dataset says."""
    out: dict[str, dict] = {}
    for info in infos:
        for name, entry in (info.get("datasets") or {}).items():
            out[name] = {**out.get(name, {}), **(entry or {})}
    for name, entry in out.items():
        parts = [(i.get("datasets") or {}).get(name) or {} for i in infos if name in (i.get("datasets") or {})]
        for kind in ("gray_images", "colour_images"):
            entry.pop(f"shard_{kind}", None)
            if all(f"shard_{kind}" in p for p in parts):
                entry[kind] = sum(p[f"shard_{kind}"] for p in parts)
    return out


def _gather_images(src: Path, dst: Path) -> None:
    if not src.is_dir() or src.resolve() == dst.resolve():
        return
    for f in sorted(src.rglob("*.png")):
        target = refuse_links(dst.parent, dst / f.relative_to(src))
        if target.exists():
            continue  # first copy wins, as for records
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(f, target)
        except OSError:  # another file system, or no hard links
            atomic_write(target, f.read_bytes())
