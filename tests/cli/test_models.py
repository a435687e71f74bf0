"""``cirbench models``: the list has a header and every card's whole description, wrapped at word
boundaries."""

from __future__ import annotations

from cirbench.cli import main
from cirbench.zoo import list_cards, load_card


def test_models_list_has_a_header_and_whole_descriptions(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["model", "arch", "weights", "description"]
    assert max(len(line) for line in lines) <= 100
    flat = " ".join(out.split())
    for name in list_cards():
        assert " ".join(load_card(name).description.split()) in flat, name
    starts = {line.split()[0] for line in lines[1:] if line[:1] != " "}
    assert starts == {"jpeg", *list_cards()}  # wrapped lines sit under the description column
