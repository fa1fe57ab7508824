"""The command line's help: every option explained, in plain words (no reST markup)."""

from __future__ import annotations

import argparse

import pytest

from convbias.__main__ import build_parser, main


def _parsers():
    parser = build_parser()
    yield "", parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_option_and_argument_has_help():
    for name, parser in _parsers():
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(a.help for a in action._choices_actions), name
                continue
            assert action.help and action.help != argparse.SUPPRESS, (
                f"python -m convbias {name}: {action.dest} has no help"
            )


@pytest.mark.parametrize("command", [[], *([c] for c, _ in list(_parsers())[1:])])
def test_help_has_no_markup(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "`" not in text and ":func:" not in text and "usage:" in text
