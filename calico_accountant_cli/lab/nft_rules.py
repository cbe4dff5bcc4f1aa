"""Felix's nftables layout rendered from a felix-shaped iptables filter table.

Felix renders one set of generic rules either way (``felix/rules``), so the nftables
form of a node is its iptables form written the way ``felix/nftables`` writes each
match and action.  This module does that for the tables the lab and the test oracle
render (:mod:`calico_accountant_cli.lab.calico_rules`,
:mod:`calico_accountant_cli.demo.render`, ``tests/support/felix_render.py``), so their
expectations carry over once chain names are mapped (nft policy and profile chains are
not hashed from v3.30: ``rename``).  It is the nft half of the tests' oracle and of the
demo's ``--dataplane nftables``; it is written from felix's source, not from the parser
(it imports nothing of ``node_agent``):

* one ``table ip calico`` / ``table ip6 calico``; every chain in the ``filter-`` layer;
  ``INPUT``/``FORWARD``/``OUTPUT`` become base chains ``filter-INPUT``... (``table.go``);
* ``counter`` on every rule with an action; a rule without one is ``continue``
  (``renderer.go``);
* comment ``cali:<hash>;`` then the comments, each cut to an equal share of 128
  characters, the whole cut at 128, characters outside ``[\\w @%+=:,./-]`` as ``_``;
* ``-m mark --mark V/M`` -> ``meta mark & M == V``; MARK set/clear -> ``meta mark set
  mark or B`` / ``meta mark set mark & ~M`` (``match_builder.go``, ``actions.go``);
* workload dispatch by the verdict maps ``filter-cali-to-wl-dispatch`` /
  ``filter-cali-from-wl-dispatch`` (``dispatch.go``); host endpoint dispatch
  (``cali-to-host-endpoint``, ``cali-from-hep-forward``...) stays chains of ``iifname``/
  ``oifname`` gotos, as felix renders it (its maps are for workload dispatch only), and
  endpoint chain names are never hashed (256 characters); non-Calico chains are dropped
  (kube-proxy and docker keep their own tables in nftables mode).

:func:`to_nft` returns both the ``nft -f`` script (counters included, so a kernel holds
exactly the rendered counts) and the JSON ``nft -j list table`` prints for it.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["NftRendering", "nft_comment", "to_nft"]

COMMENT_MAX = 128
"""``knftables.CommentLengthMax``."""
BASE_CHAINS = {"INPUT": "input", "FORWARD": "forward", "OUTPUT": "output"}
DISPATCH = {"cali-from-wl-dispatch": ("iifname", "-i"), "cali-to-wl-dispatch": ("oifname", "-o")}
_UNSAFE = re.compile(r"[^\w @%+=:,./-]")
_META_MARK = {"meta": {"key": "mark"}}


@dataclass(frozen=True, slots=True)
class NftRendering:
    script: str
    """Input for ``nft -f`` (creates the table; counters as rendered)."""
    json: str
    """What ``nft -j list table <family> calico`` prints for it."""
    family_name: str


def nft_comment(rule_hash: str, comments: list[str]) -> str:
    """Felix's ``nftRenderer.comment``: hash first, each comment cut to its share of 128."""
    fragments = [f"cali:{rule_hash};"] if rule_hash else []
    if comments:
        share = (COMMENT_MAX - len(" ".join(fragments))) // len(comments)
        fragments += [_UNSAFE.sub("_", comment)[:share] for comment in comments]
    return " ".join(fragments)[:COMMENT_MAX]


def _match(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


class _Rule:
    def __init__(self) -> None:
        self.text: list[str] = []
        self.expr: list[dict[str, Any]] = []
        self.action_text = ""
        self.action: dict[str, Any] | None = None
        self.comments: list[str] = []
        self.rule_hash = ""

    def add(self, text: str, expr: dict[str, Any]) -> None:
        self.text.append(text)
        self.expr.append(expr)


def _parse_rule(body: list[str], family: int, rename: Mapping[str, str]) -> _Rule:
    """An iptables rule's words (after ``-A CHAIN``) as an nft rule."""
    ip = "ip" if family == 4 else "ip6"
    rule = _Rule()
    words = iter(body)
    protocol = ""
    negate = False
    for word in words:
        if word == "!":
            negate = True
            continue
        if word == "-m":
            next(words)
        elif word == "--comment":
            comment = next(words)
            if comment.startswith("cali:") and not rule.rule_hash:
                rule.rule_hash = comment[5:]
            else:
                rule.comments.append(comment)
        elif word == "--mark":
            value, _, mask = next(words).partition("/")
            v, m = int(value, 0), int(mask or "0xffffffff", 0)
            op = "!=" if negate else "=="
            rule.add(f"meta mark & {m:#010x} {op} {v:#010x}", _match({"&": [_META_MARK, m]}, v, op))
        elif word == "--ctstate":
            states = sorted(state.lower() for state in next(words).split(","))
            right: Any = states if len(states) > 1 else states[0]
            rule.add(f"ct state {','.join(states)}", _match({"ct": {"key": "state"}}, right, "in"))
        elif word == "-p":
            protocol = next(words)
            number = {"ipencap": 4}.get(protocol)
            name: Any = number if number is not None else protocol
            rule.add(f"meta l4proto {name}", _match({"meta": {"key": "l4proto"}}, name))
        elif word in ("--dports", "--dport"):
            ports = [int(port) for port in next(words).split(",")]
            dport: Any = {"payload": {"protocol": protocol, "field": "dport"}}
            if len(ports) == 1:
                rule.add(f"{protocol} dport {ports[0]}", _match(dport, ports[0]))
            else:
                shown = ", ".join(str(port) for port in ports)
                rule.add(f"{protocol} dport {{ {shown} }}", _match(dport, {"set": ports}))
        elif word in ("-s", "-d"):
            address = next(words).split("/")[0]
            field = "saddr" if word == "-s" else "daddr"
            rule.add(
                f"{ip} {field} {address}", _match({"payload": {"protocol": ip, "field": field}}, address)
            )
        elif word in ("-i", "-o"):
            interface = next(words)
            key = "iifname" if word == "-i" else "oifname"
            shown = interface[:-1] + "*" if interface.endswith("+") else interface
            rule.add(f'{key} "{shown}"', _match({"meta": {"key": key}}, shown))
        elif word in ("-j", "-g"):
            _action(rule, next(words), list(words), word == "-g", rename)
            break
        negate = False
    return rule


def _action(rule: _Rule, target: str, args: list[str], goto: bool, rename: Mapping[str, str]) -> None:
    options = dict(zip(args[::2], args[1::2], strict=False))
    simple = {"ACCEPT": "accept", "DROP": "drop", "RETURN": "return", "REJECT": "reject"}
    if target in simple:
        rule.action_text, rule.action = simple[target], {simple[target]: None}
    elif target == "MARK":
        value, _, mask = options["--set-xmark"].partition("/")
        v, m = int(value, 0), int(mask, 0)
        if v == 0:
            keep = ~m & 0xFFFFFFFF
            rule.action_text = f"meta mark set mark & {keep:#x}"
            rule.action = {"mangle": {"key": _META_MARK, "value": {"&": [_META_MARK, keep]}}}
        else:
            assert v == m, f"felix sets single bits: {v:#x}/{m:#x}"
            rule.action_text = f"meta mark set mark or {v:#x}"
            rule.action = {"mangle": {"key": _META_MARK, "value": {"|": [_META_MARK, v]}}}
    elif target == "LOG":
        prefix = options.get("--log-prefix", "calico-packet: ")
        rule.action_text = f'log prefix "{prefix}" level info'
        rule.action = {"log": {"prefix": prefix, "level": "info"}}
    elif target == "NFLOG":
        prefix = options.get("--nflog-prefix", "")
        group = int(options.get("--nflog-group", "1"))
        rule.action_text = f'log prefix "{prefix}" group {group}'
        rule.action = {"log": {"prefix": prefix, "group": group}}
    else:
        verb = "goto" if goto else "jump"
        chain = "filter-" + rename.get(target, target)
        rule.action_text, rule.action = f"{verb} {chain}", {verb: {"target": chain}}


_VERDICT_TARGETS = frozenset({"ACCEPT", "DROP", "RETURN", "REJECT", "MARK", "LOG", "NFLOG"})
_LINE = re.compile(r"^\[(\d+):(\d+)\] -A (\S+) (.*)$")


def to_nft(iptables_save: str, family: int, rename: Mapping[str, str] = {}) -> NftRendering:
    """The nftables form of a felix-shaped ``iptables-save -c`` filter table."""
    family_name = "ip" if family == 4 else "ip6"
    order: list[str] = []
    rules: dict[str, list[tuple[_Rule, int, int]]] = {}
    elements: dict[str, list[tuple[str, str]]] = {name: [] for name in DISPATCH}
    in_filter = True
    for line in iptables_save.splitlines():
        if line.startswith("*"):
            in_filter = line == "*filter"
            continue
        if not in_filter:
            continue
        if line.startswith(":"):
            name = line[1:].split()[0]
            if name in BASE_CHAINS or name.startswith("cali-"):
                order.append(rename.get(name, name))
            continue
        found = _LINE.match(line)
        if found is None:
            continue
        packets, octets, chain, body = int(found[1]), int(found[2]), found[3], found[4]
        if chain not in BASE_CHAINS and not chain.startswith("cali-"):
            continue
        words = shlex.split(body)
        if chain in DISPATCH and ("-g" in words) and DISPATCH[chain][1] in words:
            interface = words[words.index(DISPATCH[chain][1]) + 1]
            elements[chain].append((interface, "filter-" + words[words.index("-g") + 1]))
            continue
        target = words[words.index("-j") + 1] if "-j" in words else ""
        if target and target not in _VERDICT_TARGETS and not target.startswith("cali-"):
            continue  # a jump to a non-Calico chain
        rule = _parse_rule(words, family, rename)
        rules.setdefault(rename.get(chain, chain), []).append((rule, packets, octets))
    for chain, (key, _flag) in DISPATCH.items():
        if chain in order:
            vmap = _Rule()
            vmap.action_text = f"{key} vmap @filter-{chain}"
            vmap.action = {"vmap": {"key": {"meta": {"key": key}}, "data": f"@filter-{chain}"}}
            vmap.rule_hash = "vmap" + chain[5:9]
            rules.setdefault(chain, []).insert(0, (vmap, -1, -1))
    return NftRendering(
        _script(family_name, order, rules, elements), _json(family_name, order, rules, elements), family_name
    )


def _rule_text(rule: _Rule, packets: int, octets: int) -> str:
    parts = list(rule.text)
    if rule.action is None:
        parts.append("continue")
    elif packets >= 0:
        parts += [f"counter packets {packets} bytes {octets}", rule.action_text]
    else:
        parts.append(rule.action_text)
    comment = nft_comment(rule.rule_hash, rule.comments)
    if comment:
        parts.append(f'comment "{comment}"')
    return " ".join(parts)


def _script(
    family_name: str,
    order: list[str],
    rules: dict[str, list[tuple[_Rule, int, int]]],
    elements: dict[str, list[tuple[str, str]]],
) -> str:
    out = [f"table {family_name} calico {{"]
    for chain, members in elements.items():
        out.append(f"  map filter-{chain} {{\n    type ifname : verdict")
        if members:
            joined = ", ".join(f'"{interface}" : goto {target}' for interface, target in members)
            out.append(f"    elements = {{ {joined} }}")
        out.append("  }")
    for chain in order:
        out.append(f"  chain filter-{chain} {{")
        if chain in BASE_CHAINS:
            out.append(f"    type filter hook {BASE_CHAINS[chain]} priority filter; policy accept;")
        out.extend(f"    {_rule_text(rule, p, b)}" for rule, p, b in rules.get(chain, ()))
        out.append("  }")
    out.append("}")
    return "\n".join(out) + "\n"


def _json(
    family_name: str,
    order: list[str],
    rules: dict[str, list[tuple[_Rule, int, int]]],
    elements: dict[str, list[tuple[str, str]]],
) -> str:
    items: list[dict[str, Any]] = [
        {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
        {"table": {"family": family_name, "name": "calico", "handle": 1}},
    ]
    for chain, members in elements.items():
        body: dict[str, Any] = {"family": family_name, "name": f"filter-{chain}", "table": "calico"}
        body.update({"type": "ifname", "handle": 0, "map": "verdict"})
        if members:
            body["elem"] = [[interface, {"goto": {"target": target}}] for interface, target in members]
        items.append({"map": body})
    for handle, chain in enumerate(order, start=1):
        items.append(
            {"chain": {"family": family_name, "table": "calico", "name": f"filter-{chain}", "handle": handle}}
        )
    handle = 1000
    for chain in order:
        for rule, packets, octets in rules.get(chain, ()):
            handle += 1
            expr = list(rule.expr)
            if rule.action is None:
                expr.append({"continue": None})
            else:
                if packets >= 0:
                    expr.append({"counter": {"packets": packets, "bytes": octets}})
                expr.append(rule.action)
            entry: dict[str, Any] = {"family": family_name, "table": "calico", "chain": f"filter-{chain}"}
            entry["handle"] = handle
            comment = nft_comment(rule.rule_hash, rule.comments)
            if comment:
                entry["comment"] = comment
            entry["expr"] = expr
            items.append({"rule": entry})
    return json.dumps({"nftables": items})
