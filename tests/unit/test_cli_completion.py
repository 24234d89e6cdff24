"""The completion table is the parser's words: subcommands, options and choices, hidden options left out."""

from __future__ import annotations

import argparse

import pytest

from meshbatch.cli_completion import collect, script


def toy() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshbatch")
    parser.add_argument("--level", choices=["a", "b"])
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run")
    run.add_argument("--config", "-c")
    run.add_argument("--secret", help=argparse.SUPPRESS)
    ca = sub.add_parser("ca")
    ca_sub = ca.add_subparsers(dest="sub")
    ca_sub.add_parser("init").add_argument("shell", choices=["bash", "zsh"])
    return parser


def test_collect_walks_every_subcommand() -> None:
    table = collect(toy())
    assert sorted(table) == ["", "ca", "ca init", "run"]
    assert table[""].commands == ["run", "ca"]
    assert table[""].options == ["-h", "--help", "--level"]
    assert table[""].choices == {"--level": ["a", "b"]}
    assert table["run"].options == ["-h", "--help", "--config", "-c"]  # --secret is hidden
    assert table["ca"].commands == ["init"]
    assert table["ca init"].commands == ["bash", "zsh"]  # a positional's choices


def test_script_tables_quote_the_words() -> None:
    bash = script(toy(), "bash")
    assert "_meshbatch_words[-]='run ca -h --help --level'" in bash
    assert "_meshbatch_words['ca init']='bash zsh -h --help'" in bash
    assert "_meshbatch_choices[--level]='a b'" in bash
    assert "_zsh_meshbatch_words['ca init']='bash zsh -h --help'" in script(toy(), "zsh")
    with pytest.raises(ValueError, match="fish"):
        script(toy(), "fish")
