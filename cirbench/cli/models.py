"""``cirbench models``: list the model cards, or show one model's card, size, compute and memory."""

from __future__ import annotations


def add_parser(sub) -> None:
    m = sub.add_parser("models", help="list model cards or show one's details")
    m.add_argument("action", choices=["list", "info"])
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
            print(f"{name:28s} {c.arch:10s} {'weights ok ' if present else 'no weights '} {c.description[:60]}")
        return 0
    from ..zoo.profile import model_info

    for name in args.names:
        print(model_info(name, size=args.size, weights=args.weights))
    return 0
