"""Every flag of every command: help with its default, examples in --help, no
reStructuredText, bad values refused, and one environment variable per daemon flag."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from calico_accountant.runtime.flags import EnvValue, FlagSet, default_text, env_names, parse_bool
from calico_accountant_cli.main import build_parser

DAEMONS = ("agent", "aggregator")
RST = re.compile(r"``|:(?:class|func|mod|meth|attr|data|ref):`")


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def flags(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            yield action


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_flag_shows_its_default_and_help_shows_examples(name: str) -> None:
    parser = commands()[name]
    for action in flags(parser):
        assert action.help and ("(default: " in action.help or "(required" in action.help), (
            action.option_strings
        )
        assert default_text(action), action.option_strings
    text = parser.format_help()
    assert "examples:\n  $ calico-accountant " + name in text or f"calico-accountant {name}" in text
    assert "examples:" in text
    assert not RST.search(text), RST.search(text)


@pytest.mark.parametrize("daemon", DAEMONS)
def test_every_daemon_flag_has_an_environment_variable_named_in_its_help(daemon: str) -> None:
    seen: dict[str, str] = {}
    for action in flags(commands()[daemon]):
        names = env_names(action)
        assert names, f"{daemon} {action.option_strings} has no environment variable"
        assert action.help is not None
        for variable in names:
            assert f"${variable}" in action.help
            assert seen.setdefault(variable, action.dest) == action.dest, f"{variable} used twice"
        long = next(o for o in action.option_strings if o.startswith("--"))
        canonical = "CALICO_ACCOUNTANT_" + long[2:].upper().replace("-", "_")
        assert canonical in names or names[0] in ("NODENAME", "KUBECONFIG"), (long, names)


def parse(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *argv: str) -> argparse.Namespace:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return build_parser().parse_args(list(argv))


def test_environment_values_are_typed_and_the_command_line_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "CALICO_ACCOUNTANT_INTERVAL": "2.5",
        "CALICO_ACCOUNTANT_NO_IPV6": "true",
        "CALICO_ACCOUNTANT_IPTABLES_SAVE": "cat a.save; cat b.save",
        "NODENAME": "node-7",
        "LOG_LEVEL": "DEBUG",
    }
    args = parse(monkeypatch, env, "agent")
    assert (args.interval, args.no_ipv6, args.node, args.log_level) == (2.5, True, "node-7", "debug")
    assert args.commands == ["cat a.save", "cat b.save"]
    args = parse(monkeypatch, env, "agent", "--interval", "4", "--iptables-save", "cat c.save", "--node", "n")
    assert (args.interval, args.commands, args.node) == (4.0, ["cat c.save"], "n")
    monkeypatch.setenv("CALICO_ACCOUNTANT_LOG_LEVEL", "error")  # the canonical name beats the alias
    assert parse(monkeypatch, {}, "agent").log_level == "error"
    aggregator = parse(
        monkeypatch, {"CALICO_ACCOUNTANT_COMPAT_METRICS": "1", "ETCD_CERT_FILE": "/c"}, "aggregator"
    )
    assert aggregator.compat_metrics is True and aggregator.etcd_cert == "/c"


@pytest.mark.parametrize(
    ("env", "argv", "message"),
    [
        ({}, ("agent", "--log-level", "loud"), "invalid choice: 'loud'"),
        ({}, ("aggregator", "--log-format", "xml"), "invalid choice: 'xml'"),
        ({}, ("aggregator", "--grpc-port", "70000"), "is not a port"),
        ({}, ("agent", "--interval", "0"), "must be greater than 0"),
        ({}, ("top", "--limit", "-1"), "must be greater than 0"),
        ({"CALICO_ACCOUNTANT_LOG_LEVEL": "loud"}, ("aggregator",), "$CALICO_ACCOUNTANT_LOG_LEVEL='loud'"),
        ({"LOG_LEVEL": "loud"}, ("agent",), "$LOG_LEVEL='loud' is not valid: choose from"),
        ({"CALICO_ACCOUNTANT_MAX_SERIES": "lots"}, ("aggregator",), "$CALICO_ACCOUNTANT_MAX_SERIES='lots'"),
        ({"CALICO_ACCOUNTANT_COMPAT_METRICS": "maybe"}, ("aggregator",), "is not a boolean"),
        ({"CALICO_ACCOUNTANT_LEADER_ELECTION": "raft"}, ("aggregator",), "choose from none, etcd"),
    ],
)
def test_bad_values_are_errors(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    argv: tuple[str, ...],
    message: str,
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse(monkeypatch, env, *argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_flagset_mechanics() -> None:
    parser = argparse.ArgumentParser()
    flags = FlagSet(parser, env_prefix="X_", environ={"X_COUNT": "3", "OLD": "yes"})
    count = flags.add("--count", type=int, default=1, help="how many")
    flags.add("--on", action="store_true", default=False, env="OLD", help="switch")
    assert env_names(count) == ("X_COUNT",) and count.help == "how many (default: 1; env $X_COUNT)"
    args = parser.parse_args([])
    assert (args.count, args.on) == (3, True)
    assert isinstance(EnvValue("a", "B"), str) and EnvValue("a", "B").env == "B"
    assert [parse_bool(v) for v in ("on", "0", "TRUE", "no")] == [True, False, True, False]


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    args = parse(
        monkeypatch, {"CALICO_ACCOUNTANT_INTERFACE_PREFIX": "", "FELIX_INTERFACEPREFIX": "tap"}, "aggregator"
    )
    assert args.interface_prefix == "tap"
    monkeypatch.setenv("FELIX_INTERFACEPREFIX", "")
    assert parse(monkeypatch, {}, "aggregator").interface_prefix == "cali"
