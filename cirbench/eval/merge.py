"""Merging the records of shard runs (``cirbench run --shard K/N``, or the ranks of a torchrun run) into one
run folder.

Shards split a protocol by image, so their records are disjoint; the merge keeps the first copy of any key
present twice, orders records canonically (by ``records.KEY``) and combines the provenance, so one report
covers the whole protocol. Both files are written atomically: an interrupted merge leaves no partial run.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import RunError
from ..files import atomic_write, dumps
from .records import FIELDS, KEY, RECORDS_FILE, RUN_FILE, iter_records, read_run_info

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


def merge_runs(run_dirs: list[str | os.PathLike], out_dir: str | os.PathLike) -> int:
    """Merge run folders into ``out_dir``; returns the number of records written."""
    out = Path(out_dir)
    infos = [read_run_info(d) for d in run_dirs]
    protocols = {(i.get("protocol") or {}).get("sha256") for i in infos if i}
    if len(protocols) > 1:
        raise RunError("cannot merge runs of different protocol files: " + ", ".join(map(str, run_dirs)))
    if (out / RECORDS_FILE).exists():
        raise RunError(f"{out}: already holds records; merge into a new folder")
    records = canonical([r for d in run_dirs for r in iter_records(d)])
    for r in records:
        missing = [f for f in FIELDS if f not in r]
        if missing:
            raise RunError(f"a record lacks fields {missing}: {r}")
    info = dict(infos[0]) if infos else {}
    for i in infos[1:]:
        for k in ("models", "datasets", "skipped"):
            info[k] = {**info.get(k, {}), **i.get(k, {})}
    info["merged_from"] = [{"run": str(d), "shard": i.get("shard")} for d, i in zip(run_dirs, infos, strict=True)]
    info.pop("shard", None)
    atomic_write(out / RECORDS_FILE, "".join(dumps(r) + "\n" for r in records))
    atomic_write(out / RUN_FILE, dumps(info, indent=2, sort_keys=True) + "\n")
    return len(records)
