"""``cirbench report``: tables and plots from run folders (records only; nothing is re-run)."""

from __future__ import annotations

import sys

from ..errors import ConfigError
from . import common


def add_parser(sub) -> None:
    rp = sub.add_parser("report", help="render tables and plots from run folders")
    rp.add_argument("runs", nargs="+", help="run folders (their records are read, nothing is re-run)")
    rp.add_argument("--format", default="table", choices=["table", "md", "csv", "json", "latex", "html"],
                    help="terminal table (default), md, latex, html (paper layout), or csv, json (every number)")
    rp.add_argument("-o", "--output", help="write to this file (atomically) instead of stdout")
    rp.add_argument("--space", default="y",
                    help="metric convention: y (default: rounded studio-range Y), y-float, y-full, rgb, gray")
    rp.add_argument("--metrics", help="comma-separated metrics to show (default: every metric the runs recorded; "
                    "the first is the one --ci compares and --plots draws)")
    common.add_filters(rp, "to show")
    rp.add_argument("--models", help="comma-separated models to show, in this order (default: all)")
    rp.add_argument("--published", action="store_true",
                    help="add published rows beside ours (only beside numbers in their own metric space)")
    rp.add_argument("--conventions", action="store_true",
                    help="per colour dataset x QF, every metric convention the run recorded and its difference to y")
    rp.add_argument("--ci", action="store_true", help="paired bootstrap 95%% CI and sign test vs --reference")
    rp.add_argument("--reference", default="jpeg", help="the model --ci and the difference plots compare to")
    rp.add_argument("--plots", help="write plots (PNG and PDF) to this folder (crops need --save-images runs)")
    rp.set_defaults(func=run)


def run(args) -> int:
    from ..files import atomic_write
    from ..metrics import SPACES
    from ..report import render

    if args.space not in SPACES:
        raise ConfigError(f"--space {args.space}: choose from {', '.join(SPACES)}")
    filters = dict(datasets=common.csv(args.datasets, "--datasets"), qfs=common.qfs(args.qf),
                   models=common.csv(args.models, "--models"), metrics=common.csv(args.metrics, "--metrics"))
    kwargs = dict(space=args.space, published=args.published, ci=args.ci, reference=args.reference,
                  conventions=args.conventions, **filters)
    if args.plots:
        from ..report.plots import make_plots

        # The figures show what the tables show: the same filters (they were once ignored here).
        left_out: list[str] = []
        plots = make_plots(args.runs, args.plots, reference=args.reference, published=args.published,
                           space=args.space, notes=left_out, **filters)
        print(f"{len(plots)} plot files in {args.plots}", file=sys.stderr)
        for note in left_out:
            print(f"note: {note}", file=sys.stderr)
    if args.format == "html" and args.plots:
        kwargs["plots_dir"] = args.plots
    text = render(args.runs, args.format, **kwargs)
    if args.output:
        try:
            atomic_write(args.output, text)
        except OSError as exc:
            raise ConfigError(f"{args.output}: cannot write the report ({exc.strerror or exc}); "
                              "choose another -o") from None
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0
