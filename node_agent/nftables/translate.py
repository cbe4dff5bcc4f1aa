"""A ``table ip[6] calico`` as the filter table attribution reads.

Felix's nftables mode keeps one table per family and turns iptables' tables into
*layers*: every chain name gets a ``filter-``, ``nat-``, ``mangle-`` or ``raw-`` prefix
(``felix/nftables/table_layer.go``).  The ``filter-`` layer holds exactly the chains the
iptables filter table would, so it becomes a :class:`~node_agent.iptables_save.FilterTable`
with the layer prefix removed and each rule written as its iptables twin
(:mod:`node_agent.nftables.statements`); the other layers' rules only take counter slots,
as other iptables tables' rules do.

Comments: felix writes ``cali:<hash>; <comment> <comment>...`` cut at 128 characters
(``felix/nftables/renderer.go``).  The hash becomes the rule id; the rest one comment.

Dispatch: workloads are reached through the verdict maps ``filter-cali-to-wl-dispatch``
and ``filter-cali-from-wl-dispatch`` (``ifname : verdict``, elements ``"cali12" : goto
filter-cali-tw-cali12``), so the interface of an endpoint chain is read from the map
element that leads to it, falling back to the chain name's suffix.
"""

from __future__ import annotations

from calico_accountant.felix.chains import ENDPOINT_CHAIN_PREFIXES
from calico_accountant.records import Diagnostic
from node_agent.iptables_save import FilterTable, new_rule
from node_agent.nftables.document import NftTable
from node_agent.nftables.statements import shape_of, strip_layer

__all__ = ["DISPATCH_MAPS", "FILTER_LAYER", "TableRead", "split_comment", "to_filter_table"]

FILTER_LAYER = "filter-"
DISPATCH_MAPS = {
    "filter-cali-to-wl-dispatch": "cali-tw-",
    "filter-cali-from-wl-dispatch": "cali-fw-",
}
"""Felix's workload dispatch verdict maps (``rules.NftablesTo/FromWorkloadDispatchMap``
in its filter layer) and the endpoint chains each leads to."""


class TableRead:
    """One nft table read: the filter layer as a table, and the counter slots of all rules."""

    __slots__ = ("counter_slots", "diagnostics", "rules", "table")

    def __init__(
        self, table: FilterTable, rules: int, diagnostics: list[Diagnostic], counter_slots: list[int]
    ) -> None:
        self.table = table
        self.rules = rules
        self.diagnostics = diagnostics
        self.counter_slots = counter_slots
        """The slots of the rules that have a ``counter`` statement, in order."""


def _unquoted(comment: str) -> str:
    """A comment as the iptables twin can quote it (felix's never hold ``"``: odd input's do)."""
    return comment.replace('"', "'") if '"' in comment else comment


def split_comment(comment: str) -> tuple[str, str]:
    """``cali:<hash>; Start of tier x`` -> (``<hash>``, ``Start of tier x``); a comment
    felix did not write -> ("", the comment)."""
    if comment.startswith("cali:"):
        hash_part, _, rest = comment.partition(";")
        return hash_part[5:], rest.strip()
    return "", comment.strip()


def to_filter_table(nft: NftTable, source: str, family: int) -> TableRead:
    """The filter layer of ``nft`` as a FilterTable; every rule of every layer has a counter slot."""
    table = FilterTable(source=source, family=family)
    diagnostics: list[Diagnostic] = []
    chains = table.chains
    for name in nft.chains:
        if name.startswith(FILTER_LAYER):
            chains.setdefault(name[len(FILTER_LAYER) :], [])
            table.declared.add(name[len(FILTER_LAYER) :])
    packets = table.packets
    octets = table.octets
    ordinal = 0
    counter_slots: list[int] = []
    for rule in nft.rules:
        shape = shape_of(rule.expr)
        slot = ordinal
        ordinal += 1
        if shape.packets >= 0:
            counter_slots.append(slot)
            packets.append(shape.packets)
            octets.append(shape.octets)
        elif shape.target:
            # Felix puts a counter on every rule with an action; without one, a record
            # built on this rule could not be read (it is left out, with this reason).
            packets.append(-1)
            octets.append(-1)
            diagnostics.append(
                Diagnostic("no_counter", f"rule in {rule.chain} has no counter statement", rule.item, source)
            )
        else:
            # No action, no counter (felix's ``continue`` and ``vmap`` rules): nothing reads it.
            packets.append(0)
            octets.append(0)
        if not rule.chain.startswith(FILTER_LAYER):
            continue
        chain = rule.chain[len(FILTER_LAYER) :]
        rule_id, text = split_comment(rule.comment)
        comments = ""
        if rule_id:
            comments += ' -m comment --comment "cali:' + _unquoted(rule_id) + '"'
        if text:
            comments += ' -m comment --comment "' + _unquoted(text) + '"'
        verb = " -g " if shape.goto else " -j "
        body = f"-A {chain}{comments}{shape.matches}" + (
            f"{verb}{shape.target}{shape.action}" if shape.target else ""
        )
        rules = chains.get(chain)
        if rules is None:
            rules = chains[chain] = []
            diagnostics.append(
                Diagnostic("unknown_chain", f"rule for undeclared chain {rule.chain}", rule.item, source)
            )
        rules.append(new_rule((shape.target, body, slot, rule.item, rule_id)))
    table.interfaces = _dispatch_interfaces(nft, table, source, diagnostics)
    return TableRead(table, ordinal, diagnostics, counter_slots)


def _dispatch_interfaces(
    nft: NftTable, table: FilterTable, source: str, diagnostics: list[Diagnostic]
) -> dict[str, str]:
    """Endpoint chain -> interface, from the dispatch maps' elements."""
    interfaces: dict[str, str] = {}
    for found in nft.maps:
        prefix = DISPATCH_MAPS.get(found.name)
        if prefix is None:
            continue
        for interface, verdict in found.elements:
            jump = None
            if isinstance(verdict, dict):
                jump = verdict.get("goto") or verdict.get("jump")
            target = jump.get("target") if isinstance(jump, dict) else None
            if not isinstance(target, str):
                continue  # "return" and the like: no endpoint behind it
            chain = strip_layer(target)
            if not chain.startswith(prefix) or ENDPOINT_CHAIN_PREFIXES.get(chain[:8]) is None:
                diagnostics.append(
                    Diagnostic(
                        "dispatch_mismatch",
                        f"{found.name}: {interface} leads to {target}, not a {prefix} chain",
                        found.item,
                        source,
                    )
                )
                continue
            if chain not in table.chains:
                diagnostics.append(
                    Diagnostic(
                        "missing_chain",
                        f"{found.name}: {interface} leads to {target}, which is not in the dump",
                        found.item,
                        source,
                    )
                )
                continue
            interfaces[chain] = interface
    return interfaces
