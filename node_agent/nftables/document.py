"""``nft -j list table ip calico`` output to plain objects: tables, chains, rules, maps.

libnftables JSON (libnftables-json(5)) is one object ``{"nftables": [...]}`` whose items
each hold one key: ``metainfo``, ``table``, ``chain``, ``rule``, ``map``, ``set``...
This module only takes that list apart, tolerantly: an item it cannot use becomes a
counted :class:`~calico_accountant.records.Diagnostic` naming its position (``line`` is
the 1-based index of the item in the ``nftables`` list: ``nft -j`` prints everything on
one line, so an item index is the only position there is).  What the rules *mean* is
:mod:`node_agent.nftables.statements`' business.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from calico_accountant.records import Diagnostic

__all__ = ["NftDocument", "NftMap", "NftRule", "NftTable", "looks_like_nft_json", "read_document"]

_FAMILIES = {"ip": 4, "ip6": 6}
"""The families felix programs (``table ip calico``, ``table ip6 calico``)."""


class NftRule(NamedTuple):
    """One rule (a named tuple: a big node has ~150k, and a frozen dataclass costs several
    times as much to build)."""

    chain: str
    expr: list[Any]
    comment: str
    item: int
    """1-based index of the rule in the ``nftables`` list (its "line")."""


@dataclass(frozen=True, slots=True)
class NftMap:
    name: str
    elements: list[tuple[str, Any]]
    """(key, verdict object) pairs, e.g. ``("cali12", {"goto": {"target": "filter-cali-tw-cali12"}})``."""
    item: int


@dataclass(slots=True)
class NftTable:
    """One table of the input, its chains in the order ``nft`` printed them."""

    family_name: str
    name: str
    chains: list[str] = field(default_factory=list)
    rules: list[NftRule] = field(default_factory=list)
    maps: list[NftMap] = field(default_factory=list)

    @property
    def family(self) -> int:
        """4 or 6; 0 for a family felix does not use (``inet``, ``arp``, ``bridge``...)."""
        return _FAMILIES.get(self.family_name, 0)


@dataclass(slots=True)
class NftDocument:
    tables: list[NftTable] = field(default_factory=list)
    items: int = 0
    diagnostics: list[Diagnostic] = field(default_factory=list)


new_rule = functools.partial(tuple.__new__, NftRule)


def looks_like_nft_json(text: str) -> bool:
    """Whether an input is libnftables JSON rather than ``iptables-save`` text.

    Told by content, never by file name: the first non-blank character of JSON is ``{``
    and the ``nftables`` key comes first, while an ``iptables-save`` dump starts with
    ``#``, ``*``, ``:``, ``-`` or ``[``.
    """
    head = text[:256].lstrip()
    return head.startswith("{") and '"nftables"' in head


def read_document(text: str, source: str) -> NftDocument:
    """The tables of one ``nft -j`` output, with diagnostics for what could not be used."""
    document = NftDocument()
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:
        document.diagnostics.append(Diagnostic("bad_json", f"not valid JSON: {error}", 0, source))
        return document
    items = data.get("nftables") if isinstance(data, dict) else None
    if not isinstance(items, list):
        document.diagnostics.append(
            Diagnostic("bad_json", 'JSON without an "nftables" list: not `nft -j` output', 0, source)
        )
        return document
    document.items = len(items)
    tables: dict[tuple[str, str], NftTable] = {}

    def table_of(body: dict[str, Any]) -> NftTable:
        family = body.get("family")
        name = body.get("table")
        if name is None:
            name = body.get("name")
        key = (family if isinstance(family, str) else "", name if isinstance(name, str) else "")
        found = tables.get(key)
        if found is None:
            found = tables[key] = NftTable(*key)
            document.tables.append(found)
        return found

    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict) or len(item) != 1:
            document.diagnostics.append(_bad_item(number, source, "not a one-key object"))
            continue
        ((kind, body),) = item.items()
        if kind == "metainfo":
            continue
        if not isinstance(body, dict):
            document.diagnostics.append(_bad_item(number, source, f"{kind} is not an object"))
            continue
        if kind == "table":
            table_of({"family": body.get("family"), "table": body.get("name")})
        elif kind == "chain":
            name = body.get("name")
            if not isinstance(name, str) or not name:
                document.diagnostics.append(_bad_item(number, source, "chain without a name"))
                continue
            table_of(body).chains.append(name)
        elif kind == "rule":
            rule = _rule(body, number, source, document.diagnostics)
            if rule is not None:
                table_of(body).rules.append(rule)
        elif kind == "map":
            found_map = _map(body, number, source, document.diagnostics)
            if found_map is not None:
                table_of(body).maps.append(found_map)
        # sets, counters, flowtables, elements...: nothing to attribute
    return document


def _rule(body: dict[str, Any], number: int, source: str, diagnostics: list[Diagnostic]) -> NftRule | None:
    chain = body.get("chain")
    expr = body.get("expr")
    if not isinstance(chain, str) or not chain or not isinstance(expr, list):
        diagnostics.append(_bad_item(number, source, "rule without a chain or an expr list"))
        return None
    comment = body.get("comment", "")
    if not isinstance(comment, str):
        diagnostics.append(_bad_item(number, source, "rule comment is not a string; ignored"))
        comment = ""
    return new_rule((chain, expr, comment, number))


def _map(body: dict[str, Any], number: int, source: str, diagnostics: list[Diagnostic]) -> NftMap | None:
    name = body.get("name")
    if not isinstance(name, str):
        diagnostics.append(_bad_item(number, source, "map without a name"))
        return None
    elements: list[tuple[str, Any]] = []
    for element in body.get("elem", ()) if isinstance(body.get("elem", ()), list) else ():
        pair = element
        if isinstance(pair, dict) and "elem" in pair:  # an element with a comment or timeout
            pair = pair["elem"]
        if isinstance(pair, list) and len(pair) == 2:
            key = pair[0]
            if isinstance(key, dict) and isinstance(key.get("elem"), dict):
                key = key["elem"].get("val")
            if isinstance(key, str):
                elements.append((key, pair[1]))
                continue
        diagnostics.append(
            _bad_item(number, source, f"map {name}: element {str(element)[:60]!r} not understood")
        )
    return NftMap(name, elements, number)


def _bad_item(number: int, source: str, why: str) -> Diagnostic:
    return Diagnostic("bad_nft_item", f"nftables item {number}: {why}", number, source)
