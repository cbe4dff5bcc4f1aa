"""The columnar cold path (``node_agent.columnar``) and the general path agree exactly.

``parse_node`` takes the columnar path for well-formed ``iptables-save -c`` filter tables
and the general ``scan`` + ``plan_table`` for everything else.  Whatever it took, the
result must be what the general path alone gives: the same records as a multiset of
(key, packets, bytes, rule ids, chain comment, group members), the same diagnostics, the
same line and rule counts.  The tables are felix_render's for every layout and option,
as rendered and with one line dropped, duplicated, moved or garbled (which must either
still agree or send the parse to the general path).
"""

from __future__ import annotations

import functools
import random
import re
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calico_accountant.records import CounterRecord, Diagnostic, ParseResult
from node_agent.columnar import parse_columnar
from node_agent.parsing import SteadyStateParser, parse_node
from tests.support.felix_render import (
    LAYOUTS,
    CounterForm,
    Framing,
    NodeModel,
    node_models,
    render,
    sized_model,
)

EXAMPLES_PER_LAYOUT = 300
PATH_SETTINGS = settings(
    max_examples=EXAMPLES_PER_LAYOUT,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_SAVE: tuple[CounterForm, Framing] = ("prefix", "save")
_LISTING: tuple[CounterForm, Framing] = ("inline", "list")
FORMS = [_SAVE, _SAVE, _SAVE, _SAVE, _LISTING]
"""How the drawn tables are printed: mostly as ``iptables-save -c``, now and then as a listing."""


def general_parse(text: str, family: int | None) -> ParseResult:
    """The general path alone (scan + plan_table), as parse_node ran it before the columnar path existed."""
    return parse_node([("node", text)], family=family, columnar=False)


def _diagnostics(result: ParseResult) -> Counter[Diagnostic]:
    return Counter(result.diagnostics)


def assert_same(got: ParseResult, want: ParseResult) -> None:
    got_records: Counter[CounterRecord] = Counter(got.records)
    want_records: Counter[CounterRecord] = Counter(want.records)
    assert got_records == want_records, (
        f"only columnar: {list((got_records - want_records).items())[:5]}\n"
        f"only general: {list((want_records - got_records).items())[:5]}"
    )
    assert _diagnostics(got) == _diagnostics(want)
    assert (got.rules_seen, got.lines_seen) == (want.rules_seen, want.lines_seen)


def _perturb(text: str, rng: random.Random) -> str:
    """One line dropped, duplicated, moved, garbled or given a bad counter."""
    lines = text.split("\n")
    index = rng.randrange(len(lines))
    line = lines[index]
    how = rng.choice(("drop", "duplicate", "move", "garble", "counter", "quote"))
    if how == "drop":
        del lines[index]
    elif how == "duplicate":
        lines.insert(index, line)
    elif how == "move":
        del lines[index]
        lines.insert(rng.randrange(len(lines) + 1), line)
    elif how == "garble":
        cut = rng.randrange(len(line) + 1)
        lines[index] = (
            line[:cut] + rng.choice(("\\", "'", '"', "] -A x ", " -j ", "\t", "")) + line[cut + 1 :]
        )
    elif how == "counter":
        lines[index] = line.replace("[", "[9" * 12, 1) if rng.random() < 0.5 else line.replace("[", "[-", 1)
    else:
        lines[index] = line.replace('"', "", 1)
    return "\n".join(lines)


def _check(text: str, family: int | None) -> None:
    assert_same(parse_node([("node", text)], family=family), general_parse(text, family))


@pytest.mark.parametrize("layout", LAYOUTS)
@PATH_SETTINGS
@given(data=st.data())
def test_columnar_path_agrees_with_general_path(layout: str, data: st.DataObject) -> None:
    model = data.draw(node_models(layout, counter_forms=FORMS))
    rendered = render(model)
    family = rendered.family if model.options.framing == "list" else None
    _check(rendered.text, family)
    perturbed = _perturb(rendered.text, random.Random(data.draw(st.integers(0, 2**32))))
    _check(perturbed, family)


@functools.cache
def fast_path_taken() -> Counter[str]:
    """Per layout, how many of EXAMPLES_PER_LAYOUT tables drawn as the agreement test draws
    them (derandomized, so the count is the same at every run) the columnar path took."""
    taken: Counter[str] = Counter()
    for layout in LAYOUTS:
        _count_fast_path(layout, taken)
    return taken


def _count_fast_path(layout: str, taken: Counter[str]) -> None:
    @settings(PATH_SETTINGS, derandomize=True, database=None)
    @given(model=node_models(layout, counter_forms=FORMS))
    def count(model: NodeModel) -> None:
        rendered = render(model)
        family = rendered.family if model.options.framing == "list" else None
        if parse_columnar(rendered.text, "node", family) is not None:
            taken[layout] += 1

    count()


def test_columnar_path_was_taken_for_every_layout() -> None:
    """The agreement test's tables mostly take the fast path: it is not silently skipped."""
    taken = fast_path_taken()
    for layout in LAYOUTS:
        assert taken[layout] >= EXAMPLES_PER_LAYOUT // 8, dict(taken)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_sized_tables_take_the_columnar_path_and_agree(layout: str) -> None:
    text = render(sized_model(60, 8, layout=layout, seed=3)).text
    assert parse_columnar(text, "node", None) is not None
    assert_same(parse_node([("node", text)]), general_parse(text, None))


def test_steady_state_after_a_columnar_parse_matches_fresh_parses() -> None:
    model = sized_model(30, 6, layout="v3.30", seed=5)
    parser = SteadyStateParser()
    for step in range(4):
        text = render(model.with_options(flow_seed=step)).text
        assert_same(parser.parse([("node", text)]), general_parse(text, None))
    assert parser.fast_path_reads == 3


def _recount(text: str, rng: random.Random) -> str:
    """The same rules with some counters changed: up, down (a deny may go negative) or to
    zero; now and then one past 2**64 (unreadable)."""
    unreadable = rng.random() < 0.15

    def new_counter(match: re.Match[str]) -> str:
        nonlocal unreadable
        if rng.random() < 0.7:
            return match[0]
        if unreadable:
            unreadable = False
            return f"\n[{2**64 + 5}:0] "
        packets = rng.choice((0, int(match[1]) + rng.randint(1, 50), rng.randint(0, 10)))
        return f"\n[{packets}:{packets * rng.randint(40, 1500)}] "

    return _COUNTER.sub(new_counter, text)


_COUNTER = re.compile(r"\n\[(\d+):(\d+)\] ")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_steady_state_with_changing_counters_agrees_with_general_path(data: st.DataObject) -> None:
    """Reads of the same rules with moving counters: the steady state re-evaluates only the
    records whose counters changed, and must still give what a fresh general parse gives."""
    layout = data.draw(st.sampled_from(LAYOUTS))
    model = data.draw(node_models(layout, counter_forms=[("prefix", "save")]))
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    parser = SteadyStateParser()
    text = render(model).text
    for _ in range(5):
        assert_same(parser.parse([("node", text)]), general_parse(text, None))
        text = _recount(text, rng)


def test_a_quoted_comment_holding_dash_j_ends_the_parse() -> None:
    """A trailing comment holding `` -j `` makes the target search cut it mid-quote; the
    comment search then started over forever (a daemon-killing loop the perturbed tables
    above ran into, on both paths).  Both paths must finish, and agree."""
    text = render(sized_model(3, 2, layout="v3.30", seed=7)).text
    lines = text.split("\n")
    index = next(i for i, line in enumerate(lines) if '--comment "Policy ' in line)
    lines[index] += ' -m comment --comment "note -j here"'
    broken = "\n".join(lines)
    result = parse_node([("node", broken)])
    assert_same(result, general_parse(broken, None))
    assert result.records


@pytest.mark.parametrize("space", ["\t", "\r", "\x0b", "\x0c"])
def test_a_chain_name_holding_other_whitespace_goes_to_the_general_path(space: str) -> None:
    """The row pattern takes a chain as ASCII non-whitespace: a chain name holding a tab
    (or CR, VT, FF) leaves its lines to the general path, whose result stands."""
    text = render(sized_model(3, 2, layout="v3.30", seed=8)).text
    chain = next(line.split()[2] for line in text.split("\n") if " -A cali-tw-" in line)
    renamed = text.replace(chain, chain[:9] + space + chain[9:])
    assert renamed != text
    assert parse_columnar(renamed, "node", None) is None
    assert_same(parse_node([("node", renamed)]), general_parse(renamed, None))


def _as_read_at(text: str, second: int, policy_packets: int) -> str:
    """The table as iptables-save prints it at another moment: other timestamps in the
    ``# Generated``/``# Completed`` comments and other built-in chain policy counters."""
    text = re.sub(r"(?m)^(# (?:Generated by .*|Completed) on .*)12:00:00", rf"\g<1>12:00:{second:02d}", text)
    return re.sub(
        r"(?m)^(:(?:INPUT|FORWARD|OUTPUT) \S+) \[\d+:\d+\]$",
        rf"\1 [{policy_packets}:{policy_packets * 60}]",
        text,
    )


def test_steady_state_ignores_timestamps_and_builtin_policy_counters() -> None:
    """A real node's every dump has a new time in its comments and new counters on the
    built-in chains' policies; neither is a rule change, so the fast path must still apply."""
    model = sized_model(20, 4, layout="v3.30", seed=9)
    parser = SteadyStateParser()
    for step in range(4):
        text = _as_read_at(render(model.with_options(flow_seed=step)).text, step, 1000 + step)
        assert "12:00:00" not in text or step == 0
        assert_same(parser.parse([("node", text)]), general_parse(text, None))
    assert parser.fast_path_reads == 3
    assert parser.full_reads == 1


def _edit_rule_text(text: str, rng: random.Random) -> str:
    """One change that is not a counter: a rule id, a rule dropped or duplicated, a chain
    declaration added, a comment line added between rules, a rule line's prefix garbled."""
    lines = text.split("\n")
    rules = [index for index, line in enumerate(lines) if line.startswith("[")]
    index = rng.choice(rules)
    line = lines[index]
    edit = rng.randrange(6)
    if edit == 0 and '"cali:' in line:
        lines[index] = line.replace('"cali:', '"cali:X', 1)
    elif edit == 1:
        del lines[index]
    elif edit == 2:
        lines.insert(index, line)
    elif edit == 3:
        lines.insert(2, ":cali-extra - [0:0]")
    elif edit == 4:
        lines.insert(index, "# a comment between rules")
    else:
        lines[index] = "[" + line[1:].replace(":", ";", 1)
    return "\n".join(lines)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_steady_state_after_a_rule_text_change_agrees_with_general_path(data: st.DataObject) -> None:
    """Rule text that changed between reads (whatever the counters did) must never be
    read with the previous read's plan: the result is what a fresh general parse gives."""
    layout = data.draw(st.sampled_from(LAYOUTS))
    model = data.draw(node_models(layout, counter_forms=[("prefix", "save")]))
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    parser = SteadyStateParser()
    text = render(model).text
    assert_same(parser.parse([("node", text)]), general_parse(text, None))
    for _ in range(3):
        if not re.search(r"(?m)^\[", text):
            break
        edited = _edit_rule_text(_recount(text, rng), rng)
        fast_before = parser.fast_path_reads
        assert_same(parser.parse([("node", edited)]), general_parse(edited, None))
        if _COUNTER.sub("", edited) != _COUNTER.sub("", text):
            assert parser.fast_path_reads == fast_before
        text = edited
