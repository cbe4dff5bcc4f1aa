"""Loading and listing Calico's nftables table in a lab namespace (Debian's ``nft``; root).

What felix's nftables mode leaves on a node is ``table ip calico`` and ``table ip6
calico``; :func:`load_table` replaces one of them in one ``nft -f`` transaction (the
counters in the script included), and :func:`list_command` is what an agent runs to read
it (``--nft-list``).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from calico_accountant_cli.lab.netns import netns_exec_argv, run_command

__all__ = ["counters_as_save", "list_argv", "list_command", "list_table", "load_table", "zero_chain_counters"]


def _family_name(family: int) -> str:
    return "ip" if family == 4 else "ip6"


def load_table(namespace: str, family: int, script: str) -> None:
    """Replace ``table ip[6] calico`` in ``namespace`` by ``script`` atomically."""
    name = _family_name(family)
    reset = f"table {name} calico {{}}\ndelete table {name} calico\n"
    run_command(netns_exec_argv(namespace, ["nft", "-f", "-"]), input_text=reset + script, timeout=300.0)


def list_argv(namespace: str, family: int) -> list[str]:
    return netns_exec_argv(namespace, ["nft", "-j", "list", "table", _family_name(family), "calico"])


def list_command(namespace: str, family: int = 4) -> str:
    """The agent's ``--nft-list`` command for ``namespace``'s table of ``family``."""
    return shlex.join(list_argv(namespace, family))


def list_table(namespace: str, family: int = 4) -> str:
    """``nft -j list table ip[6] calico`` as Debian's nft prints it."""
    return run_command(list_argv(namespace, family))


def _filter_rules(listing: str) -> list[dict[str, Any]]:
    items = json.loads(listing).get("nftables", [])
    return [
        item["rule"]
        for item in items
        if isinstance(item, dict)
        and isinstance(item.get("rule"), dict)
        and str(item["rule"].get("chain", "")).startswith("filter-")
    ]


def _counter_of(rule: dict[str, Any]) -> dict[str, Any] | None:
    for statement in rule.get("expr", ()):
        if isinstance(statement, dict) and isinstance(statement.get("counter"), dict):
            counter: dict[str, Any] = statement["counter"]
            return counter
    return None


def counters_as_save(listing: str, iptables_names: Mapping[str, str]) -> str:
    """The counters of a listed table as ``iptables-save -c`` lines carrying only the chain
    (its iptables name: ``iptables_names`` maps nft names back) and the ``cali:`` hash, which
    is what :func:`calico_accountant_cli.demo.render.carry_counters` keys on."""
    lines = []
    for rule in _filter_rules(listing):
        comment = str(rule.get("comment", ""))
        counter = _counter_of(rule)
        if not comment.startswith("cali:") or counter is None:
            continue
        chain = str(rule["chain"])[len("filter-") :]
        chain = iptables_names.get(chain, chain)
        rule_hash = comment[5:].partition(";")[0]
        lines.append(
            f'[{counter["packets"]}:{counter["bytes"]}] -A {chain} -m comment --comment "cali:{rule_hash}"'
        )
    return "\n".join(lines) + "\n"


def zero_chain_counters(namespace: str, family: int, chains: frozenset[str]) -> None:
    """Restart the counters of ``chains`` (nft names, without the layer) at zero, keeping their
    rules: one JSON transaction flushing each chain and adding its rules back with zero
    counters (nft 1.0.6 has no ``reset rules``)."""
    name = _family_name(family)
    commands: list[dict[str, Any]] = []
    for chain in sorted(chains):
        layered = "filter-" + chain
        commands.append({"flush": {"chain": {"family": name, "table": "calico", "name": layered}}})
        for rule in _filter_rules(list_table(namespace, family)):
            if rule["chain"] != layered:
                continue
            added = {key: value for key, value in rule.items() if key != "handle"}
            counter = _counter_of(added)
            if counter is not None:
                counter["packets"] = counter["bytes"] = 0
            commands.append({"add": {"rule": added}})
    run_command(
        netns_exec_argv(namespace, ["nft", "-j", "-f", "-"]),
        input_text=json.dumps({"nftables": commands}),
        timeout=300.0,
    )
