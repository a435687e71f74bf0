"""``cirbench site``: a static leaderboard site (HTML + CSS + JS, no network) from run folders."""

from __future__ import annotations

import sys
import time


def add_parser(sub) -> None:
    sp = sub.add_parser("site", help="build a static leaderboard site from run folders (opens from file://)")
    sp.add_argument("runs", nargs="+")
    sp.add_argument("--out", required=True, help="folder to write (replaced when it holds an earlier site)")
    sp.add_argument("--published", action="store_true",
                    help="add published rows beside ours (only beside numbers in their own metric space)")
    sp.add_argument("--reference", default="jpeg", help="the model the bootstrap CIs are taken against")
    sp.add_argument("--crop", type=int, default=256,
                    help="side of the window of each saved image the compare widget shows (0: whole images)")
    sp.add_argument("--title", default="cirbench leaderboard", help="the leaderboard page's heading and title")
    sp.set_defaults(func=run)


def run(args) -> int:
    from ..report.site import build_site

    start = time.perf_counter()
    s = build_site(args.runs, args.out, published=args.published, reference=args.reference, crop=args.crop,
                   title=args.title)
    print(f"wrote {s.out}: {s.pages} pages, {s.images} images, {s.files} files, {s.bytes / 1e6:.2f} MB in "
          f"{time.perf_counter() - start:.1f} s; open {s.out / 'index.html'}", file=sys.stderr)
    return 0
