"""One nft rule's statements (libnftables JSON ``expr``) to what attribution asks of a rule.

Attribution (:mod:`node_agent.attribution`) reads a rule through a handful of questions
about an ``iptables-save`` body: its target, its ``--mark`` guards, its ``--set-xmark``,
its comments, whether it matches on anything else.  Felix renders the same rules into
nftables (``felix/nftables/renderer.go``, ``match_builder.go``, ``actions.go``), so each
nft statement has an iptables twin, and this module writes that twin: the attribution
code is then shared unchanged by both dataplanes.

=====================================================  ==================================
nft (as ``nft -j`` prints it)                           iptables twin
=====================================================  ==================================
``meta mark & M == V`` / ``!= V``                       ``-m mark [!] --mark V/M``
``meta mark set mark or B``                             ``-j MARK --set-xmark B/B``
``meta mark set mark & A``                              ``-j MARK --set-xmark 0x0/~A``
``meta mark set mark & A | B`` (``& A ^ B``)            ``-j MARK --set-xmark B/(~A|B)``
``ct state ...``                                        ``-m conntrack --ctstate ...``
``iifname X`` / ``oifname X``                           ``-i X`` / ``-o X``
any other match                                         ``-m nft`` (an extra match)
``accept drop reject return``                           ``ACCEPT DROP REJECT RETURN``
``jump C`` / ``goto C``                                 ``-j C`` / ``-g C``, layer prefix off
``log ... group N`` / ``log ...``                       ``NFLOG`` / ``LOG``
``counter packets P bytes B``                           the rule's counters
=====================================================  ==================================

Marks are ints in JSON (the text form prints them zero-padded, ``0x00010000``); strings
in hex or decimal are accepted too.  Nothing here raises on odd input: an unknown
statement is an extra match or an opaque target.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["RuleShape", "shape_of", "strip_layer"]

MASK32 = 0xFFFFFFFF
LAYERS = ("filter-", "nat-", "mangle-", "raw-")
"""Felix's table layers in one nft table (``felix/nftables/table_layer.go``)."""

_META_MARK = {"meta": {"key": "mark"}}
_MAX_U64 = 2**64 - 1
_VERDICTS = {"accept": "ACCEPT", "drop": "DROP", "reject": "REJECT", "return": "RETURN", "continue": ""}


class RuleShape(NamedTuple):
    target: str
    """iptables-style target: ``ACCEPT``, ``DROP``, ``MARK``, ``cali-pi-...`` (layer prefix
    removed), ``NFLOG``...; empty for a rule with no action (felix's ``continue``)."""
    matches: str
    """The match part of the iptables twin (leading space), comments excluded."""
    action: str
    """What follows the target in the twin (`` --set-xmark V/M``), else empty."""
    packets: int
    """-1 when the rule has no readable ``counter`` statement."""
    octets: int
    goto: bool
    dispatch_map: str
    """For a ``vmap @map`` rule, the map's name (with its layer); else empty."""


def strip_layer(name: str) -> str:
    """``filter-cali-tw-x`` -> ``cali-tw-x``; other names unchanged."""
    for layer in LAYERS:
        if name.startswith(layer):
            return name[len(layer) :]
    return name


def _number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MASK32 else None
    if isinstance(value, str):
        try:
            number = int(value, 0) if value[:2].lower() == "0x" else int(value)
        except ValueError:
            return None
        return number if 0 <= number <= MASK32 else None
    return None


def _is_meta(node: Any, key: str) -> bool:
    return isinstance(node, dict) and isinstance(node.get("meta"), dict) and node["meta"].get("key") == key


def _binary(node: Any, operator: str) -> tuple[Any, Any] | None:
    """``{"&": [a, b]}`` -> (a, b)."""
    if isinstance(node, dict) and len(node) == 1:
        operands = node.get(operator)
        if isinstance(operands, list) and len(operands) == 2:
            return operands[0], operands[1]
    return None


def _mark_guard(match: dict[str, Any]) -> str | None:
    """``meta mark [& M] (==|!=) V`` as ``-m mark [!] --mark V/M``; None if not a mark match."""
    op = match.get("op", "==")
    left = match.get("left")
    value = _number(match.get("right"))
    if value is None or op not in ("==", "!=", "in"):
        return None
    if _is_meta(left, "mark"):
        mask = MASK32
    else:
        masked = _binary(left, "&")
        if masked is None or not _is_meta(masked[0], "mark"):
            return None
        found = _number(masked[1])
        if found is None:
            return None
        mask = found
    bang = "! " if op == "!=" else ""
    return f" -m mark {bang}--mark {value:#x}/{mask:#x}"


def _set_mark(value: Any) -> tuple[int, int] | None:
    """The ``meta mark set ...`` expression as iptables' ``--set-xmark V/M``
    (``mark = (mark & ~M) ^ V``)."""
    constant = _number(value)
    if constant is not None:
        return constant, MASK32
    ored = _binary(value, "|") or _binary(value, "^")
    if ored is not None:
        base, bits = ored
        bits_value = _number(bits)
        if bits_value is None:
            return None
        if _is_meta(base, "mark"):
            return bits_value, bits_value if "|" in value else 0
        anded = _binary(base, "&")
        if anded is not None and _is_meta(anded[0], "mark"):
            keep = _number(anded[1])
            if keep is None:
                return None
            return bits_value, (~keep & MASK32) | bits_value
        return None
    anded = _binary(value, "&")
    if anded is not None and _is_meta(anded[0], "mark"):
        keep = _number(anded[1])
        if keep is not None:
            return 0, ~keep & MASK32
    return None


def _ct_states(right: Any) -> str:
    states = right if isinstance(right, list) else [right]
    return ",".join(sorted(str(state).upper() for state in states))


def shape_of(expr: list[Any]) -> RuleShape:
    """The iptables twin of one rule's statements; see the module docstring."""
    matches: list[str] = []
    target = ""
    action = ""
    packets = octets = -1
    goto = False
    dispatch_map = ""
    for statement in expr:
        if not isinstance(statement, dict) or len(statement) != 1:
            matches.append(" -m nft")
            continue
        ((verb, body),) = statement.items()
        if verb == "counter" and type(body) is dict and len(body) == 2:
            found_packets = body.get("packets")
            found_octets = body.get("bytes")
            if (
                type(found_packets) is int
                and type(found_octets) is int
                and 0 <= found_packets <= _MAX_U64
                and 0 <= found_octets <= _MAX_U64
            ):
                packets, octets = found_packets, found_octets
                continue
        if verb == "match" and type(body) is dict:
            # The common shape first: ``meta mark & M == V`` with ints, as nft -j prints it.
            left = body.get("left")
            right = body.get("right")
            op = body.get("op")
            if type(left) is dict and type(right) is int and (op == "==" or op == "!="):
                masked = left.get("&")
                if (
                    type(masked) is list
                    and len(masked) == 2
                    and masked[0] == _META_MARK
                    and type(masked[1]) is int
                    and 0 <= masked[1] <= MASK32
                    and 0 <= right <= MASK32
                ):
                    bang = "! " if op == "!=" else ""
                    matches.append(f" -m mark {bang}--mark {right:#x}/{masked[1]:#x}")
                    continue
            guard = _mark_guard(body)
            if guard is not None:
                matches.append(guard)
                continue
            left = body.get("left")
            negated = "! " if body.get("op") == "!=" else ""
            if isinstance(left, dict) and left.get("ct") == {"key": "state"}:
                matches.append(f" -m conntrack {negated}--ctstate {_ct_states(body.get('right'))}")
            elif _is_meta(left, "iifname") and isinstance(body.get("right"), str):
                matches.append(f" {negated}-i {body['right']}")
            elif _is_meta(left, "oifname") and isinstance(body.get("right"), str):
                matches.append(f" {negated}-o {body['right']}")
            else:
                matches.append(" -m nft")
        elif verb == "counter":
            if isinstance(body, dict):
                found_packets = body.get("packets")
                found_octets = body.get("bytes")
                if (
                    isinstance(found_packets, int)
                    and isinstance(found_octets, int)
                    and not isinstance(found_packets, bool)
                    and not isinstance(found_octets, bool)
                    and 0 <= found_packets < 2**64
                    and 0 <= found_octets < 2**64
                ):
                    packets, octets = found_packets, found_octets
        elif verb in _VERDICTS:
            target, action = _VERDICTS[verb], ""
        elif verb in ("jump", "goto"):
            chain = body.get("target") if isinstance(body, dict) else None
            if isinstance(chain, str) and chain:
                target, action, goto = strip_layer(chain), "", verb == "goto"
            else:
                target, action = "INVALID-JUMP", ""
        elif verb == "mangle" and isinstance(body, dict) and _is_meta(body.get("key"), "mark"):
            mark = _set_mark(body.get("value"))
            target = "MARK"
            action = f" --set-xmark {mark[0]:#x}/{mark[1]:#x}" if mark is not None else " --set-xmark ?"
        elif verb == "log":
            target = "NFLOG" if isinstance(body, dict) and "group" in body else "LOG"
            action = ""
        elif verb == "vmap" and isinstance(body, dict):
            data = body.get("data")
            if isinstance(data, str) and data.startswith("@"):
                dispatch_map = data[1:]
            matches.append(" -m nft")
        else:
            target, action = verb.upper(), ""
    return RuleShape(target, "".join(matches), action, packets, octets, goto, dispatch_map)
