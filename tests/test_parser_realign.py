"""The re-parse after churn matches a table's rule lines against the previous read's by
comparing text (``node_agent.columnar.realign``) instead of splitting it again: what it
gives must be exactly what splitting gives, whatever the edit.

The reference here is the definition: ``re.split`` on the counter prefixes (the text before
the first, the counters, the rule lines, the last one cut at its newline and the rest).
Edits are those of ``test_parser_churn`` plus the ones the text comparison has to get right
at its edges: a rule line made longer (the old line is then a prefix of the new one), the
table's last rule line changed, lines that are not rules among the rules, counters that
moved.  Every matched chain must be one of the previous read's with the same rule lines, and
the whole read through the agent's parser must still be the cold parse's.
"""

from __future__ import annotations

import random
import re

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from node_agent.columnar import parse_columnar
from node_agent.columnar.realign import counters_of, realign
from node_agent.columnar.replan import MANY_CHANGED, MANY_TARGETS
from node_agent.columnar.rows import Irregular
from node_agent.parsing import SteadyStateParser, parse_node
from tests.support.felix_render import LAYOUTS, node_models, render, sized_model
from tests.test_parser_churn import _edited, assert_identical

_PREFIX = re.compile(r"\n\[([0-9]+:[0-9]+)\] ")


def _split(framed: str) -> tuple[str, list[str], list[str], str]:
    """(head, counters, rule lines, tail) by ``re.split``: the reference."""
    parts = _PREFIX.split(framed)
    last, newline, tail = parts[-1].partition("\n")
    pieces = parts[2::2]
    pieces[-1] = last
    return parts[0], parts[1::2], pieces, newline + tail


def _framed(text: str) -> str:
    return "\n" + text if text.startswith("[") else text


def _parts(text: str) -> tuple[list[str], list[str]]:
    """A read's template parts (``["\\n[", counter, "] ", rule line, ...]``) and rule lines."""
    _, counters, pieces, _ = _split(_framed(text))
    parts = ["\n[", "", "] ", ""] * len(pieces)
    parts[1::4] = counters
    parts[3::4] = pieces
    return parts, pieces


def _edge_edit(text: str, rng: random.Random) -> str:
    """One edit at an edge of the text comparison."""
    lines = text.split("\n")
    rules = [index for index, line in enumerate(lines) if line.startswith("[")]
    if not rules:
        return text
    index = rng.choice(rules)
    edit = rng.randrange(5)
    if edit == 0:
        lines[index] += rng.choice((" -m comment --comment x", "x", " "))  # the old line a prefix
    elif edit == 1:
        lines[rules[-1]] = lines[rules[-1]].replace(" -j ", " -m mark --mark 0x1 -j ", 1) + "y"
    elif edit == 2:
        lines.insert(index, rng.choice(("# a comment among the rules", "[not a counter", "")))
    elif edit == 3:
        lines[index] = re.sub(r"^\[[0-9]+:[0-9]+\]", "[7:700]", lines[index])
    else:
        return _edited(text, rng)
    return "\n".join(lines)


def _check_realigned(before: str, after: str) -> str:
    """Check realign on ``after`` against the reference; what happened (for the statistics)."""
    previous = parse_columnar(before, "node", None)
    if previous is None:
        return "no columnar parse"
    parts, old_pieces = _parts(before)
    framed = _framed(after)
    counters = counters_of(framed)
    if not counters:
        return "no rules"
    try:
        head, pieces, layout, tail = realign(framed, counters, previous, parts)
    except Irregular:
        return "irregular"  # a chain split or chains in another order: the cold parse's business
    assert (head, counters, pieces, tail) == _split(framed)
    assert sum(layout.lengths) == len(pieces)
    for index, (name, start, length, old) in enumerate(
        zip(layout.names, layout.starts, layout.lengths, layout.old, strict=True)
    ):
        assert all(piece.startswith(f"-A {name} ") for piece in pieces[start : start + length])
        if old != -1:
            assert previous.names[old] == name
            old_start = previous.starts[old]
            assert pieces[start : start + length] == old_pieces[old_start : old_start + previous.lengths[old]]
        else:
            assert index in layout.fresh
    for span in layout.spans:
        olds = layout.old[span.start : span.stop]
        assert olds == list(range(olds[0], olds[0] + len(olds)))
    return "realigned"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_realigned_rule_lines_are_exactly_the_split_ones(data: st.DataObject) -> None:
    model = data.draw(node_models(data.draw(st.sampled_from(LAYOUTS)), counter_forms=[("prefix", "save")]))
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    first = render(model).text
    # A steady read with other counters before the edit: the index of each counter's
    # readers is built (the re-parse finds its records to evaluate through it).
    before = render(model.with_options(flow_seed=model.options.flow_seed + 1)).text
    after = before
    for _ in range(data.draw(st.integers(1, 3))):
        after = _edge_edit(after, rng)
    event(_check_realigned(before, after))
    parser = SteadyStateParser()
    for text in (first, before):
        assert_identical(parser.parse([("node", text)]), parse_node([("node", text)]))
    remembered = parser._remembered.get("node")  # which path the churn read takes
    indexed = remembered is not None and remembered.compiled.readers is not None
    changed = parser.changed_reads
    assert_identical(parser.parse([("node", after)]), parse_node([("node", after)]))
    if parser.changed_reads > changed:
        event("re-parsed, " + ("records found through the index" if indexed else "every plan looked at"))


def test_a_longer_last_rule_line_is_not_taken_for_the_old_one() -> None:
    """The old last rule line is a prefix of the new one: it is a changed line, and the
    text after the rules starts after the new line."""
    text = render(sized_model(6, 2, seed=2)).text
    lines = text.split("\n")
    last = max(index for index, line in enumerate(lines) if line.startswith("["))
    lines[last] += " -m comment --comment longer"
    longer = "\n".join(lines)
    assert _check_realigned(text, longer) == "realigned"
    parser = SteadyStateParser()
    for table in (text, text, longer):
        assert_identical(parser.parse([("node", table)]), parse_node([("node", table)]))
    assert parser.changed_reads == 1


def test_a_pod_gone_keeps_the_previous_reads_rule_line_strings() -> None:
    """Matched chains' rule lines are the previous read's own strings (nothing to make or
    free for them), only the changed chains' are cut out of the text."""
    model = sized_model(20, 4, seed=4)
    text = render(model).text
    interface = model.endpoints[7].interface
    gone = "\n".join(line for line in text.split("\n") if interface not in line)
    previous = parse_columnar(text, "node", None)
    assert previous is not None
    parts, old_pieces = _parts(text)
    _, pieces, layout, _ = realign(gone, counters_of(gone), previous, parts)
    reused = {id(piece) for piece in old_pieces}
    fresh = {
        position
        for index in layout.fresh
        for position in range(layout.starts[index], layout.starts[index] + layout.lengths[index])
    }
    assert len(fresh) < len(pieces) // 10
    assert all(id(piece) in reused for position, piece in enumerate(pieces) if position not in fresh)


def test_churn_after_steady_reads_finds_its_records_through_the_index() -> None:
    """Steady reads with moving counters build the index of each counter's readers; a pod
    gone, then back, with other counters moving at each read, is re-parsed through it (and
    the index moves on with the reads after), giving the cold parse's result every time."""
    model = sized_model(30, 5, seed=6)
    interface = model.endpoints[11].interface

    def table(step: int, gone: bool) -> str:
        text = render(model.with_options(flow_seed=model.options.flow_seed + step)).text
        return "\n".join(line for line in text.split("\n") if interface not in line) if gone else text

    parser = SteadyStateParser()
    indexed = []
    for step, gone in enumerate((False, False, False, True, True, True, False, False)):
        remembered = parser._remembered.get("node")
        indexed.append(remembered is not None and remembered.compiled.readers is not None)
        text = table(step, gone)
        assert_identical(parser.parse([("node", text)]), parse_node([("node", text)]))
    assert (parser.full_reads, parser.changed_reads) == (1, 2)
    assert indexed[3] and indexed[6]  # both churn reads had the index


def test_a_negative_deny_after_churn_is_worded_with_the_cold_parses_line() -> None:
    """A re-parse keeps no line per plan (each is its first slot's): a read whose deny
    comes out negative, after a pod went, words its diagnostic with the cold parse's line."""
    model = sized_model(30, 5, seed=8)
    text = render(model).text
    interface = model.endpoints[3].interface
    gone = "\n".join(line for line in text.split("\n") if interface not in line)
    lines = gone.split("\n")
    jumps = [
        index
        for index, line in enumerate(lines)
        if re.match(r"^\[[1-9][0-9]*:[0-9]+\] -A cali-tw-\S+ .*-j cali-p[io]-", line)
    ]
    assert jumps
    index = jumps[-1]
    lines[index] = re.sub(r"^\[[0-9]+:[0-9]+\]", "[0:0]", lines[index])
    negative = "\n".join(lines)
    parser = SteadyStateParser()
    for table in (text, render(model.with_options(flow_seed=model.options.flow_seed + 1)).text, negative):
        assert_identical(parser.parse([("node", table)]), parse_node([("node", table)]))
    assert parser.changed_reads == 1
    assert parser.parse([("node", negative)]).diagnostics == parse_node([("node", negative)]).diagnostics
    assert any(diagnostic.line for diagnostic in parse_node([("node", negative)]).diagnostics)


def test_a_table_rewritten_whole_is_parsed_cold_not_rule_by_rule() -> None:
    """Every rule line changed (felix re-rendered the table: new rule ids): once a quarter
    of the lines had to be cut out one by one the re-parse gives up and the whole text is
    parsed cold (one split is cheaper), with the cold parse's result."""
    text = render(sized_model(100, 10, seed=9)).text
    rewritten = text.replace('"cali:', '"cali:Z')
    assert rewritten.count("\n[") > 4 * 1024
    parser = SteadyStateParser()
    parser.parse([("node", text)])
    assert_identical(parser.parse([("node", rewritten)]), parse_node([("node", rewritten)]))
    assert (parser.full_reads, parser.changed_reads) == (2, 0)


def test_many_chains_changed_at_once_are_parsed_cold() -> None:
    """Past MANY_CHANGED chains changed, came or went, the chains depending on them are not
    searched for name by name: the whole text is parsed cold, with the cold parse's result."""
    text = render(sized_model(20, 4, seed=10)).text
    declarations = "".join(f":cali-pi-extra{index} - [0:0]\n" for index in range(MANY_CHANGED + 1))
    more = text.replace("\n:", "\n" + declarations + ":", 1)
    assert more != text
    parser = SteadyStateParser()
    parser.parse([("node", text)])
    assert_identical(parser.parse([("node", more)]), parse_node([("node", more)]))
    assert (parser.full_reads, parser.changed_reads) == (2, 0)
    fewer = text.replace("\n:", "\n" + declarations.split("\n", 1)[0] + "\n:", 1)
    assert_identical(parser.parse([("node", fewer)]), parse_node([("node", fewer)]))
    assert parser.changed_reads == 1  # a few chains: re-parsed


def test_many_policy_chains_rewritten_at_once_are_parsed_cold() -> None:
    """Past MANY_TARGETS changed chains that endpoint chains jump to, the endpoint chains
    jumping to them are not searched for name by name: the whole text is parsed cold."""
    text = render(sized_model(30, 6, seed=11)).text
    chains = sorted(set(re.findall(r"^\[\d+:\d+\] -A (cali-p[io]-\S+) ", text, re.MULTILINE)))
    assert len(chains) > MANY_TARGETS
    rewritten = text
    for chain in chains[: MANY_TARGETS + 1]:
        rule = re.search(rf'^\[\d+:\d+\] -A {re.escape(chain)} .*?"cali:([^"]+)"', rewritten, re.MULTILINE)
        assert rule is not None
        rewritten = rewritten.replace(f'"cali:{rule[1]}"', f'"cali:{rule[1]}X"', 1)
    parser = SteadyStateParser()
    parser.parse([("node", text)])
    assert_identical(parser.parse([("node", rewritten)]), parse_node([("node", rewritten)]))
    assert (parser.full_reads, parser.changed_reads) == (2, 0)
