"""Merging the records of shard runs (``cirbench run --shard K/N``) into one run directory.

Shards split a protocol by image, so their records are disjoint; the merge keeps the first copy
of any key present twice, orders records canonically (by ``records.KEY``) and combines the
provenance, so one report covers the whole protocol.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .records import KEY, RUN_FILE, RecordWriter, iter_records, read_run_info

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
    """Merge run directories into ``out_dir``; returns the number of records written."""
    out = Path(out_dir)
    infos = [read_run_info(d) for d in run_dirs]
    protocols = {(i.get("protocol") or {}).get("sha256") for i in infos if i}
    if len(protocols) > 1:
        raise ValueError("cannot merge runs of different protocol files: " + ", ".join(map(str, run_dirs)))
    records = canonical([r for d in run_dirs for r in iter_records(d)])
    out.mkdir(parents=True, exist_ok=True)
    if (out / "records.jsonl").exists():
        raise ValueError(f"{out}: already holds records; merge into a new directory")
    with RecordWriter(out) as w:
        w.write(records)
    info = dict(infos[0]) if infos else {}
    for i in infos[1:]:
        for k in ("models", "datasets"):
            info[k] = {**info.get(k, {}), **i.get(k, {})}
    info["merged_from"] = [{"run": str(d), "shard": i.get("shard")} for d, i in zip(run_dirs, infos, strict=True)]
    info.pop("shard", None)
    (out / RUN_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return len(records)
