"""The command line: one console command, a --help on every subcommand, python -m entry points."""

from __future__ import annotations

import subprocess
import sys

import pytest

from calico_accountant_cli.main import SUBCOMMANDS, build_parser


def _registered() -> list[str]:
    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    return sorted(actions[0].choices or ()) if actions else []


def test_parse_is_registered() -> None:
    assert "parse" in _registered()


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_help_of_every_registered_subcommand(name: str) -> None:
    assert name in _registered(), f"{name} is listed in SUBCOMMANDS but not registered"
    done = subprocess.run(
        [sys.executable, "-m", "calico_accountant_cli", name, "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert name in done.stdout and "usage:" in done.stdout


def test_python_m_entry_point_runs_parse(tmp_path: object) -> None:
    dump = (
        '*filter\n:cali-tw-eth0x - [0:0]\n[7:420] -A cali-tw-eth0x -m comment --comment "cali:x" '
        '-m comment --comment "Drop if no policies passed packet" -j DROP\nCOMMIT\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "calico_accountant_cli", "parse", "--format", "json", "-"],
        input=dump,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"kind":"no_policy_drop"' in done.stdout and '"packets":7' in done.stdout


def test_nothing_parsed_is_a_failure() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "calico_accountant_cli", "parse", "-"],
        input="this is not a table\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "garbled_line" in done.stderr


def test_agent_imports_only_what_it_runs() -> None:
    """The agent's memory is mostly its imports: ``calico-accountant agent`` registers only its
    own subcommand, and the web configuration, its security helpers and libraries load only
    when ``--web-config`` asks."""
    probe = (
        "import sys\n"
        "from calico_accountant_cli.main import build_parser\n"
        "build_parser('agent').parse_args(['agent', '--node', 'n'])\n"
        "import node_agent.agent\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} | set(sys.modules))))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(done.stdout.split())
    assert "node_agent" in loaded and "calico_accountant.runtime.http" in loaded
    assert not loaded & {"aggregator", "cryptography", "jwt", "bcrypt", "yaml", "lightkube"}, loaded
    web = {"calico_accountant.runtime.web_config", "calico_accountant.runtime.web_security"}
    assert not loaded & web
