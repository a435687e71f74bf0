"""``cirbench models``: list the model cards, show one model's card, size, compute and memory, or fetch
cards' weights into the cache."""

from __future__ import annotations

import sys

from ..errors import ConfigError


def add_parser(sub) -> None:
    m = sub.add_parser("models", help="list model cards, show one's details or fetch weights")
    m.add_argument("action", choices=["list", "info", "fetch"])
    m.add_argument("names", nargs="*")
    m.add_argument("--size", type=int, default=256, help="square input side for GFLOPs/memory (default 256)")
    m.add_argument("--weights")
    m.set_defaults(func=run)


def run(args) -> int:
    from ..zoo import list_cards, load_card

    if args.action == "list":
        print(f"{'jpeg':28s} the JPEG input itself (zero baseline)")
        for name in list_cards():
            c = load_card(name)
            present = bool(c.weight_names) and all(p.exists() for p in c.weight_paths())
            state = "weights ok " if present else ("fetchable  " if c.urls else "no weights ")
            print(f"{name:28s} {c.arch:10s} {state} {c.description[:60]}")
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
