"""Walk packets through a rendered filter table and advance its counters (pure).

Two uses: the no-root fallback of the demo (the bundled dumps' counters advance as if
the demo's traffic plan ran through them), and a rootless cross-check that the renderer
really enforces what :mod:`calico_accountant_cli.demo.verdicts` says Calico decides.

It understands exactly the rule vocabulary :mod:`calico_accountant_cli.demo.render`
produces -- ``-i/-o`` (with ``+``), ``-s``, ``-p``, ``--dports``, ``--mark``,
``--ctstate``, ``-j``/``-g`` and ``MARK --set-xmark`` -- and refuses anything else
rather than guess.  Every packet is a new flow (conntrack state NEW), which is what the
demo's traffic sends and what reaches Calico's policy rules.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "Packet",
    "SimulatedTable",
    "TableError",
    "Verdict",
    "advance_counters",
    "load_table",
]

_RULE = re.compile(r"^\[(\d+):(\d+)\] -A (\S+) (.*)$")
_BUILTIN = {"INPUT", "FORWARD", "OUTPUT"}
_VALUE_OPTIONS = {
    "-i", "-o", "-s", "-d", "-p", "-m", "--comment", "--mark", "--ctstate", "--dports",
    "-j", "-g", "--set-xmark", "--log-prefix", "--log-level", "--match-set",
}  # fmt: skip


class TableError(ValueError):
    """A rule the simulator does not understand, or a table it cannot walk."""


@dataclass(frozen=True, slots=True)
class Packet:
    """A new-flow packet crossing the node: in from ``in_interface``, out ``out_interface``."""

    in_interface: str
    out_interface: str
    source: str
    protocol: str
    dport: int | None = None
    length: int = 60


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    counted: tuple[int, ...]
    """Indexes (into :attr:`SimulatedTable.rules`) of every rule the packet matched."""


@dataclass(frozen=True, slots=True)
class _Rule:
    chain: str
    text: str
    in_interface: str | None = None
    out_interface: str | None = None
    source: ipaddress.IPv4Network | None = None
    protocol: str | None = None
    dports: frozenset[int] | None = None
    mark: tuple[int, int] | None = None
    ctstates: frozenset[str] | None = None
    target: str = ""
    goto: bool = False
    set_mark: tuple[int, int] | None = None
    source_set: str | None = None


@dataclass(slots=True)
class SimulatedTable:
    """A parsed table: rules in file order, each chain's rule indexes, and counters."""

    rules: list[_Rule] = field(default_factory=list)
    chains: dict[str, list[int]] = field(default_factory=dict)
    packets: list[int] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    """The original text, one entry per line; rule lines are re-rendered from counters."""
    rule_lines: list[int] = field(default_factory=list)
    ipsets: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """IP set name → member addresses, for ``-m set --match-set NAME src``."""

    def walk(self, packet: Packet) -> Verdict:
        """The rules ``packet`` matches from ``FORWARD``, and whether it is accepted."""
        counted: list[int] = []
        mark = 0
        stack: list[tuple[str, int]] = []
        chain, position = "FORWARD", 0
        for _step in range(100_000):
            indexes = self.chains.get(chain, [])
            if position >= len(indexes):
                if not stack:
                    return Verdict(True, tuple(counted))  # FORWARD policy ACCEPT
                chain, position = stack.pop()
                continue
            index = indexes[position]
            rule = self.rules[index]
            position += 1
            if not _matches(rule, packet, mark, self.ipsets):
                continue
            counted.append(index)
            target = rule.target
            if target == "MARK" and rule.set_mark is not None:
                value, mask = rule.set_mark
                mark = (mark & ~mask) ^ value
            elif target == "ACCEPT":
                return Verdict(True, tuple(counted))
            elif target in ("DROP", "REJECT"):
                return Verdict(False, tuple(counted))
            elif target == "RETURN":
                if not stack:
                    return Verdict(True, tuple(counted))
                chain, position = stack.pop()
            elif target in ("", "LOG"):
                continue
            elif target in self.chains or target in _BUILTIN:
                if not rule.goto:
                    stack.append((chain, position))
                chain, position = target, 0
            else:
                raise TableError(f"jump to unknown chain {target!r}: {rule.text}")
        raise TableError("rule loop: a packet did not leave the table")

    def count(self, packet: Packet, times: int = 1) -> Verdict:
        """Walk ``packet`` and add ``times`` packets (and their bytes) to every rule it matched."""
        verdict = self.walk(packet)
        for index in verdict.counted:
            self.packets[index] += times
            self.bytes[index] += times * packet.length
        return verdict

    def text(self) -> str:
        """The table in ``iptables-save -c`` form with the current counters."""
        out = list(self.lines)
        for index, line_number in enumerate(self.rule_lines):
            rule = self.rules[index]
            out[line_number] = f"[{self.packets[index]}:{self.bytes[index]}] -A {rule.chain} {rule.text}"
        return "\n".join(out) + "\n"


def _interface_matches(pattern: str | None, name: str) -> bool:
    if pattern is None:
        return True
    if pattern.endswith("+"):
        return name.startswith(pattern[:-1])
    return name == pattern


def _matches(rule: _Rule, packet: Packet, mark: int, ipsets: Mapping[str, frozenset[str]]) -> bool:
    if not _interface_matches(rule.in_interface, packet.in_interface):
        return False
    if not _interface_matches(rule.out_interface, packet.out_interface):
        return False
    if rule.source is not None and ipaddress.IPv4Address(packet.source) not in rule.source:
        return False
    if rule.source_set is not None:
        if rule.source_set not in ipsets:
            raise TableError(f"IP set {rule.source_set} is not known")
        if packet.source not in ipsets[rule.source_set]:
            return False
    if rule.protocol is not None and rule.protocol != packet.protocol:
        return False
    if rule.dports is not None and packet.dport not in rule.dports:
        return False
    if rule.mark is not None and mark & rule.mark[1] != rule.mark[0]:
        return False
    return rule.ctstates is None or "NEW" in rule.ctstates


def _mark_pair(text: str) -> tuple[int, int]:
    value, _, mask = text.partition("/")
    return int(value, 0), int(mask or "0xffffffff", 0)


def _parse_rule(chain: str, text: str) -> _Rule:
    words = shlex.split(text)
    options: dict[str, str] = {}
    index = 0
    while index < len(words):
        word = words[index]
        if word == "!":
            raise TableError(f"negated matches are not simulated: {text}")
        if word not in _VALUE_OPTIONS or index + 1 >= len(words):
            raise TableError(f"unsupported option {word!r} in: {text}")
        value = words[index + 1]
        if word == "--match-set":
            if index + 2 >= len(words) or words[index + 2] != "src":
                raise TableError(f"only --match-set NAME src is simulated: {text}")
            options["--match-set"] = value
            index += 3
            continue
        if word in ("-m", "--comment"):
            index += 2
            continue
        if word in ("-j", "-g"):
            options["target"] = value
            options["goto"] = "1" if word == "-g" else ""
        else:
            options[word] = value
        index += 2
    source = options.get("-s")
    return _Rule(
        chain=chain,
        text=text,
        in_interface=options.get("-i"),
        out_interface=options.get("-o"),
        source=ipaddress.IPv4Network(source) if source else None,
        protocol=options.get("-p"),
        dports=frozenset(int(p) for p in options["--dports"].split(",")) if "--dports" in options else None,
        mark=_mark_pair(options["--mark"]) if "--mark" in options else None,
        ctstates=frozenset(options["--ctstate"].split(",")) if "--ctstate" in options else None,
        target=options.get("target", ""),
        goto=bool(options.get("goto")),
        set_mark=_mark_pair(options["--set-xmark"]) if "--set-xmark" in options else None,
        source_set=options.get("--match-set"),
    )


def load_table(text: str, ipsets: Mapping[str, Iterable[str]] | None = None) -> SimulatedTable:
    """Parse an ``iptables-save -c`` filter table written by the demo's renderer;
    ``ipsets`` gives the members of the IP sets its rules match."""
    table = SimulatedTable(ipsets={name: frozenset(members) for name, members in (ipsets or {}).items()})
    for line_number, line in enumerate(text.splitlines()):
        table.lines.append(line)
        if line.startswith(":"):
            table.chains.setdefault(line[1:].split()[0], [])
            continue
        match = _RULE.match(line)
        if match is None:
            continue
        rule = _parse_rule(match.group(3), match.group(4))
        table.chains.setdefault(rule.chain, []).append(len(table.rules))
        table.rules.append(rule)
        table.packets.append(int(match.group(1)))
        table.bytes.append(int(match.group(2)))
        table.rule_lines.append(line_number)
    return table


def advance_counters(
    text: str, packets: Iterable[tuple[Packet, int]], ipsets: Mapping[str, Iterable[str]] | None = None
) -> str:
    """``text`` with every rule's counter advanced by the packets that would match it."""
    table = load_table(text, ipsets)
    for packet, times in packets:
        if times > 0:
            table.count(packet, times)
    return table.text()
