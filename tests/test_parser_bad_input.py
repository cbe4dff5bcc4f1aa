"""Bad input: the parser says what is wrong, where, and still counts every good line.

Each case damages a table rendered by ``felix_render`` in one known way and checks three
things: the diagnostic (code and 1-based line), that no exception escapes, and that every
record the damage does not touch is still there with its exact value.  The daemon-level
guarantee is a hypothesis property: arbitrary bytes never raise, and garbage lines spliced
into a good table leave all of its records intact.
"""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calico_accountant.records import CounterKey, CounterRecord, Kind, ParseResult
from node_agent.parsing import SteadyStateParser, parse_node
from tests.support.felix_render import RenderedTable, RenderOptions, build_model, render

ValueKey = tuple[CounterKey, int, int]


def values(records: list[CounterRecord]) -> Counter[ValueKey]:
    return Counter((r.key, r.packets, r.bytes) for r in records)


def _table(seed: int = 11, **options: object) -> RenderedTable:
    """A v3.30 node with several endpoints, deny records and non-zero counters."""
    for attempt in range(seed, seed + 50):
        model = build_model(
            random.Random(attempt),
            "v3.30",
            endpoints=4,
            policies=6,
            pass_rules=False,
            options=RenderOptions(flow_seed=attempt, flows_per_direction=8, **options),  # type: ignore[arg-type]
        )
        rendered = render(model)
        kinds = {r.key.kind for r in rendered.expected if r.packets}
        if {Kind.POLICY_ACCEPT, Kind.POLICY_DENY, Kind.POLICY_RULE} <= kinds:
            return rendered
    raise AssertionError("no suitable model found")  # pragma: no cover - the generator is rich enough


@pytest.fixture(scope="module")
def table() -> RenderedTable:
    return _table()


def _line_of(lines: list[str], rule_hash: str) -> int:
    """0-based index of the rule line carrying ``cali:<hash>``."""
    needle = f'"cali:{rule_hash}"'
    return next(i for i, line in enumerate(lines) if needle in line)


def _codes(result: ParseResult) -> Counter[str]:
    return Counter(result.diagnostic_counts())


def _untouched(rendered: RenderedTable, *hashes: str) -> Counter[ValueKey]:
    """The expected records that read none of the given rules."""
    return values([r for r in rendered.expected if not set(r.rule_ids) & set(hashes)])


def _assert_contains(result: ParseResult, wanted: Counter[ValueKey]) -> None:
    missing = wanted - values(result.records)
    assert not missing, f"records lost: {list(missing)}"


# ------------------------------------------------------------------------------------------


def test_good_table_is_exact(table: RenderedTable) -> None:
    """The baseline every damaged variant is compared with."""
    result = parse_node([("node", table.text)])
    assert values(result.records) == values(table.expected)
    assert _codes(result) == table.expected_diagnostics
    assert result.rules_seen == table.rule_lines


@pytest.mark.parametrize("data", ["", b"", "\n", "   \n\n"])
def test_empty_input(data: str | bytes) -> None:
    result = parse_node([("empty", data)])
    assert result.records == []
    assert "empty_input" in _codes(result)


def test_truncated_dump_keeps_every_complete_rule(table: RenderedTable) -> None:
    lines = table.text.splitlines()
    last_rule = max(i for i, line in enumerate(lines) if line.startswith("["))
    cut_hash = re.search(r'"cali:([^"]+)"', lines[last_rule])
    assert cut_hash is not None
    text = "\n".join(lines[:last_rule]) + "\n" + lines[last_rule][: len(lines[last_rule]) // 2]
    result = parse_node([("node", text)])
    codes = _codes(result)
    assert codes["truncated"] == 1
    assert codes["missing_commit"] == 1
    truncated = next(d for d in result.diagnostics if d.code == "truncated")
    assert truncated.line == last_rule + 1
    _assert_contains(result, _untouched(table, cut_hash.group(1)))
    assert result.rules_seen == table.rule_lines - 1


def test_garbled_line_is_reported_with_its_line_and_skipped(table: RenderedTable) -> None:
    lines = table.text.splitlines()
    at = len(lines) // 2
    lines.insert(at, "this is not an iptables-save line at all")
    result = parse_node([("node", "\n".join(lines) + "\n")])
    garbled = [d for d in result.diagnostics if d.code == "garbled_line"]
    assert [d.line for d in garbled] == [at + 1]
    assert garbled[0].source == "node"
    assert values(result.records) == values(table.expected)
    assert result.rules_seen == table.rule_lines


def _deny_record(table: RenderedTable) -> CounterRecord:
    return next(r for r in table.expected if r.key.kind is Kind.POLICY_DENY and r.packets)


@pytest.mark.parametrize(
    "bad_counter",
    ["[-5:100]", "[5:-100]", "[18446744073709551616:0]", "[1:99999999999999999999999]", "[x:1]"],
)
def test_bad_counter_omits_only_the_records_reading_it(table: RenderedTable, bad_counter: str) -> None:
    deny = _deny_record(table)
    jump_hash = deny.rule_ids[0]
    lines = table.text.splitlines()
    index = _line_of(lines, jump_hash)
    lines[index] = re.sub(r"^\[\d+:\d+\]", bad_counter, lines[index])
    result = parse_node([("node", "\n".join(lines) + "\n")])
    bad = [d for d in result.diagnostics if d.code == "bad_counter"]
    assert [d.line for d in bad] == [index + 1]
    assert deny.key not in {r.key for r in result.records}
    assert values(result.records) == _untouched(table, jump_hash)
    # The rule keeps its place: the accept record right after it is still exact.
    accept = next(r for r in table.expected if r.key == deny.key._replace(kind=Kind.POLICY_ACCEPT))
    assert (accept.key, accept.packets, accept.bytes) in values(result.records)


def test_largest_counter_is_accepted_and_inline_negative_rejected(table: RenderedTable) -> None:
    top = 2**64 - 1
    rule = next(r for r in table.expected if r.key.kind is Kind.POLICY_RULE and r.key.action == "allow")
    lines = table.text.splitlines()
    index = _line_of(lines, rule.rule_ids[0])
    lines[index] = re.sub(r"^\[\d+:\d+\]", f"[{top}:{top}]", lines[index])
    result = parse_node([("node", "\n".join(lines) + "\n")])
    assert "bad_counter" not in _codes(result)
    got = {r.key: r for r in result.records}[rule.key]
    assert (got.packets, got.bytes) == (top, top)

    inline = _table(counter_form="inline", framing="list")
    lines = inline.text.splitlines()
    index = next(i for i, line in enumerate(lines) if "Return if policy accepted" in line)
    lines[index] = re.sub(r"-c \d+ \d+", "-c -3 7", lines[index])
    result = parse_node([("node", "\n".join(lines) + "\n")])
    assert [d.line for d in result.diagnostics if d.code == "bad_counter"] == [index + 1]


def test_unknown_chain(table: RenderedTable) -> None:
    lines = table.text.splitlines()
    commit = lines.index("COMMIT")
    lines.insert(
        commit, '[3:180] -A cali-never-declared -m comment --comment "cali:AAAAAAAAAAAAAAAA" -j ACCEPT'
    )
    result = parse_node([("node", "\n".join(lines) + "\n")])
    unknown = [d for d in result.diagnostics if d.code == "unknown_chain"]
    assert [d.line for d in unknown] == [commit + 1]
    assert values(result.records) == values(table.expected)
    assert result.rules_seen == table.rule_lines + 1


def test_missing_commit_still_uses_the_rules(table: RenderedTable) -> None:
    text = "\n".join(line for line in table.text.splitlines() if line != "COMMIT") + "\n"
    result = parse_node([("node", text)])
    assert _codes(result)["missing_commit"] == 1
    assert values(result.records) == values(table.expected)


def test_non_utf8_bytes_are_replaced_and_the_line_still_parsed(table: RenderedTable) -> None:
    lines = table.text.encode().split(b"\n")
    index = next(i for i, line in enumerate(lines) if b"Unknown interface" in line)
    lines[index] = lines[index].replace(b"Unknown interface", b"Unknown \xff\xfe interface")
    noise = next(i for i, line in enumerate(lines) if b"kubernetes firewall" in line)
    lines[noise] = lines[noise].replace(b"firewall", b"fire\xc3wall")
    result = parse_node([("node", b"\n".join(lines))])
    assert sorted(d.line for d in result.diagnostics if d.code == "not_utf8") == sorted(
        [index + 1, noise + 1]
    )
    assert values(result.records) == values(table.expected)
    assert result.rules_seen == table.rule_lines


def test_missing_policy_chain(table: RenderedTable) -> None:
    accept = next(
        r for r in table.expected if r.key.kind is Kind.POLICY_ACCEPT and r.key.chain.startswith("cali-pi-")
    )
    chain = accept.key.chain
    text = (
        "\n".join(
            line
            for line in table.text.splitlines()
            if not line.startswith((f":{chain} ", f"-A {chain} ")) and f"] -A {chain} " not in line
        )
        + "\n"
    )
    result = parse_node([("node", text)])
    assert any(d.code == "missing_chain" and chain in d.message for d in result.diagnostics)
    got = values(result.records)
    assert got[(accept.key, accept.packets, accept.bytes)] == 1
    assert not any(k.kind is Kind.POLICY_RULE and k.chain == chain for k, _, _ in got)
    # A deny for it is either left out (pass rules unknown) or exact.
    deny_key = accept.key._replace(kind=Kind.POLICY_DENY)
    wanted = {(r.packets, r.bytes) for r in table.expected if r.key == deny_key}
    assert all((r.packets, r.bytes) in wanted for r in result.records if r.key == deny_key)


def test_inconsistent_counters_give_deny_negative_not_a_negative_record(table: RenderedTable) -> None:
    """More packets "accepted" after a jump than entered it cannot come from felix's rules."""
    deny = _deny_record(table)
    lines = table.text.splitlines()
    index = _line_of(lines, deny.rule_ids[1])  # the "Return if policy accepted" after the jump
    lines[index] = re.sub(r"^\[\d+:\d+\]", f"[{deny.packets + 10**6}:{deny.bytes + 10**9}]", lines[index])
    result = parse_node([("node", "\n".join(lines) + "\n")])
    negative = [d for d in result.diagnostics if d.code == "deny_negative"]
    assert len(negative) == 1
    assert deny.key not in {r.key for r in result.records}
    assert all(r.packets >= 0 and r.bytes >= 0 for r in result.records)
    _assert_contains(result, _untouched(table, deny.rule_ids[1]))


@pytest.mark.parametrize("bad_counter", ["[-1:0]", "[18446744073709551616:1]", "[1:18446744073709551616]"])
def test_steady_state_parser_handles_a_bad_read_between_good_ones(
    table: RenderedTable, bad_counter: str
) -> None:
    """The agent's parser sees the same rules every read: a read with one broken counter must
    give what a fresh parse gives (that record left out, the rest exact), and the next good
    read must be exact again."""
    deny = _deny_record(table)
    lines = table.text.splitlines()
    index = _line_of(lines, deny.rule_ids[0])
    lines[index] = re.sub(r"^\[\d+:\d+\]", bad_counter, lines[index])
    broken = "\n".join(lines) + "\n"
    steady = SteadyStateParser()
    for text in (table.text, broken, table.text, broken):
        got = steady.parse([("node", text)])
        fresh = parse_node([("node", text)])
        assert values(got.records) == values(fresh.records)
        assert got.diagnostic_counts() == fresh.diagnostic_counts()
    assert values(steady.parse([("node", table.text)]).records) == values(table.expected)
    assert [d.line for d in got.diagnostics if d.code == "bad_counter"] == [index + 1]


# ------------------------------------------------------------------------------------------
# Daemon-level guarantees (hypothesis)
# ------------------------------------------------------------------------------------------

_SPECIAL_START = ("*", ":", "-", "[", "#", "COMMIT")
_LINE_BREAKS = re.compile(rb"[\n\r\x0b\x0c\x1c\x1d\x1e]")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=2000), st.text(max_size=500).map(str.encode)))
def test_no_exception_escapes_for_arbitrary_bytes(data: bytes) -> None:
    result = parse_node([("garbage", data)])
    assert isinstance(result, ParseResult)
    assert all(r.packets >= 0 and r.bytes >= 0 for r in result.records)
    assert isinstance(parse_node([("as-text", data.decode("utf-8", "replace"))]), ParseResult)
    steady = SteadyStateParser()
    steady.parse([("g", data)])
    steady.parse([("g", data)])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_garbage_spliced_into_a_table_is_skipped_and_every_good_line_counted(data: st.DataObject) -> None:
    table = _GOOD_TABLE
    lines = table.text.encode().split(b"\n")
    garbage = data.draw(
        st.lists(
            st.tuples(
                st.integers(0, len(lines) - 2),  # never after the final newline
                st.binary(min_size=1, max_size=80)
                .map(lambda b: _LINE_BREAKS.sub(b"", b))
                .filter(
                    lambda b: (
                        b.strip() != b""
                        and not b.decode("utf-8", "replace").strip().startswith(_SPECIAL_START)
                    )
                ),
            ),
            min_size=1,
            max_size=6,
        )
    )
    for position, junk in sorted(garbage, reverse=True):
        lines.insert(position + 1, junk)
    result = parse_node([("node", b"\n".join(lines))])
    assert values(result.records) == values(table.expected)
    assert result.rules_seen == table.rule_lines
    assert _codes(result)["garbled_line"] == len(garbage)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(0, 10**9), junk=st.binary(max_size=40))
def test_a_table_damaged_anywhere_never_raises(cut: int, junk: bytes) -> None:
    raw = _GOOD_TABLE.text.encode()
    at = cut % (len(raw) + 1)
    for data in (raw[:at], raw[:at] + junk + raw[at:]):
        result = parse_node([("node", data)])
        assert all(r.packets >= 0 and r.bytes >= 0 for r in result.records)


_GOOD_TABLE = _table(seed=23)


def test_a_garbled_line_naming_ip6tables_does_not_make_an_ipv4_table_ipv6() -> None:
    """Found by the splicing test above: the family came from any ``ip6tables`` near the top."""
    lines = _GOOD_TABLE.text.encode().split(b"\n")
    lines.insert(1, b"ip6tables")
    result = parse_node([("node", b"\n".join(lines))])
    assert {r.key.family for r in result.records} == {4}
    assert values(result.records) == values(_GOOD_TABLE.expected)
    assert _codes(result)["garbled_line"] == 1
