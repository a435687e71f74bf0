#!/usr/bin/env python3
"""The compact PromptCIR's validation gain against samples seen across its training phases.

    python docs/training_phases.py     # writes models/promptcir-compact/phases.png, prints a Markdown table

Reads the committed phase logs (``models/promptcir-compact/phase*-log.jsonl``); each phase started from the EMA
weights of the one before, so samples add up.
"""

from __future__ import annotations

from pathlib import Path

from cirbench.train.log import phase_table, write_phase_curves

CARD = Path(__file__).resolve().parent.parent / "models" / "promptcir-compact"
# Global batch per phase (configs/promptcir-compact*.toml): phases 1-3 logged no sample count.
BATCH = {1: 8, 2: 8, 3: 16, 4: 16, 5: 16, 6: 16}
NOTES = ("Validation: BSDS500 val, 3 images in phases 1-3, 6 in phases 4-6 (the step at phase 4 mixes a new set "
         "and a new recipe).\nPhases 1-2 used the L1 loss (QF 90 below zero), phases 3-6 the PSNR loss.")


def main() -> None:
    phases = [(f"phase {i}", CARD / f"phase{i}-log.jsonl", b) for i, b in BATCH.items()
              if (CARD / f"phase{i}-log.jsonl").is_file()]
    write_phase_curves(phases, CARD / "phases.png", notes=NOTES)
    rows = phase_table(phases)
    qfs = sorted({q for r in rows for q in r["gain"]}, key=int)
    print("| phase | step | samples seen | hours logged | " + " | ".join(f"gain QF {q}" for q in qfs) + " |")
    print("|---|---:|---:|---:|" + "---:|" * len(qfs))
    for r in rows:
        gains = " | ".join(f"{r['gain'][q]:+.3f}" if q in r["gain"] else "" for q in qfs)
        print(f"| {r['phase']} | {r['step']} | {r['samples']:,} | {r['hours']:.2f} | {gains} |")


if __name__ == "__main__":
    main()
