"""docs/configuration.md is exactly what the argument parsers generate, whatever the
environment it is generated in, and names every flag of every command."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from calico_accountant_cli.docs_reference import reference
from calico_accountant_cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "docs" / "configuration.md"


def test_the_committed_reference_is_current() -> None:
    assert COMMITTED.read_text() == reference(), (
        "docs/configuration.md is out of date: "
        "python -m calico_accountant_cli.docs_reference > docs/configuration.md"
    )


def test_the_environment_does_not_change_the_reference() -> None:
    env = {
        **os.environ,
        "CALICO_ACCOUNTANT_INTERVAL": "3",
        "NODENAME": "somewhere",
        "LOG_LEVEL": "debug",
        "COLUMNS": "40",
    }
    done = subprocess.run(
        [sys.executable, "-m", "calico_accountant_cli.docs_reference"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    assert done.stdout == COMMITTED.read_text()


def test_every_flag_is_in_the_reference() -> None:
    text = COMMITTED.read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sub.choices
    for name, command in sub.choices.items():
        section = text.split(f"## `calico-accountant {name}`", 1)[1].split("\n## ", 1)[0]
        for action in command._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}`" in section, (name, option)
