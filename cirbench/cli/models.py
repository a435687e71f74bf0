"""``cirbench models``: list the model cards, show one model's card, size, compute and memory, or fetch
cards' weights into the cache."""

from __future__ import annotations

import sys

from ..errors import ConfigError


def add_parser(sub) -> None:
    m = sub.add_parser("models", help="list model cards, show one's details or fetch weights")
    m.add_argument("action", choices=["list", "info", "fetch"],
                   help="list: every card and whether its weights are here; info: one model's card, size, "
                        "compute and memory; fetch: download cards' weights into the cache")
    m.add_argument("names", nargs="*", help="card names (info, fetch)")
    m.add_argument("--size", type=int, default=256, help="info: square input side for GFLOPs/memory (default 256)")
    m.add_argument("--weights", help="info: measure with this weights file instead of the card's")
    m.set_defaults(func=run)


def _table(rows: list[tuple[str, ...]], width: int) -> str:
    """Columns padded to their widest cell; the last one (a description) wrapped at word boundaries to
    ``width`` with its continuation lines under it, so nothing is cut."""
    import textwrap

    heads = rows[0][:-1]
    cols = [max(len(r[i]) for r in rows) for i in range(len(heads))]
    indent = sum(cols) + 2 * len(cols)
    out = []
    for row in rows:
        lead = "".join(f"{cell:{w}s}  " for cell, w in zip(row[:-1], cols, strict=True))
        lines = textwrap.wrap(row[-1], max(30, width - indent)) or [""]
        out.append(lead + lines[0])
        out += [" " * indent + line for line in lines[1:]]
    return "\n".join(out)


def run(args) -> int:
    from ..zoo import list_cards, load_card

    if args.action == "list":
        import shutil

        rows = [("model", "arch", "weights", "description"),
                ("jpeg", "-", "-", "the JPEG input itself (zero baseline)")]
        for name in list_cards():
            c = load_card(name)
            present = bool(c.weight_names) and all(p.exists() for p in c.weight_paths())
            rows.append((name, c.arch, "present" if present else ("fetchable" if c.urls else "none"),
                         " ".join(c.description.split())))
        print(_table(rows, shutil.get_terminal_size((100, 24)).columns))
        return 0
    if args.action == "fetch":
        from ..zoo.fetch import fetch_card, missing_files

        if not args.names:
            raise ConfigError("models fetch needs card names, e.g. `cirbench models fetch fbcnn-color`")
        for name in args.names:
            card = load_card(name)
            if not missing_files(card):
                print(f"{name}: present ({', '.join(str(p) for p in card.weight_paths())})", file=sys.stderr)
                continue
            fetch_card(card)
        return 0
    from ..zoo.profile import model_info

    for name in args.names:
        print(model_info(name, size=args.size, weights=args.weights))
    return 0
