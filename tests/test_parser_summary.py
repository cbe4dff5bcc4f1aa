"""``summarize_node`` (what ``parse --format summary`` prints) is exactly the summary of
``parse_node``'s result, though it counts the columnar path's plans instead of building
their records.

Inputs: real, sample and rendered dumps as they are and damaged (bytes and lines
mutated, counters changed to absurd values or so that a deny goes negative), several
dumps of one node at once (IPv4, IPv6, nftables JSON, undecodable bytes), and the
command itself.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calico_accountant.records import Kind, ParseResult
from node_agent.columnar import ColumnarPlan
from node_agent.parsing import parse_node
from node_agent.summary import ParseSummary, summarize_node
from tests.support.felix_nft import to_nft
from tests.support.felix_render import LAYOUTS, node_models, render, sized_model
from tests.support.mutations import mutate_counters, mutate_dump, sample_dumps, seed_dumps

SEEDS = seed_dumps()
DUMPS = dict(SEEDS)
CHECKS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
seeds = st.sampled_from(sorted(DUMPS))
randoms = st.randoms(use_true_random=False)


def assert_summary_of_parse(inputs: list[tuple[str, str | bytes]], family: int | None = None) -> list[object]:
    """summarize_node == ParseSummary.of(parse_node), diagnostics in the same order; what
    the summary retained is returned."""
    retained: list[object] = []
    got = summarize_node(inputs, family=family, retain=retained)
    want = ParseSummary.of(parse_node(inputs, family=family))
    assert got.kinds == want.kinds
    assert got.diagnostics == want.diagnostics
    assert (got.rules_seen, got.lines_seen) == (want.rules_seen, want.lines_seen)
    return retained


@CHECKS
@given(seed=seeds, rng=randoms)
def test_summary_of_damaged_dumps_is_that_of_the_parse(seed: str, rng: random.Random) -> None:
    assert_summary_of_parse([("node", mutate_dump(rng, DUMPS[seed], corpus=SEEDS))])


@CHECKS
@given(seed=seeds, rng=randoms)
def test_summary_with_changed_counters_is_that_of_the_parse(seed: str, rng: random.Random) -> None:
    """Counters changed at random: denies go negative, some counters become unreadable;
    then the plans cannot simply be counted."""
    data = mutate_counters(rng, DUMPS[seed], interesting=rng.choice((0.0, 0.05, 0.5)))
    assert_summary_of_parse([("node", data)])


@settings(CHECKS, max_examples=50)
@given(model=st.sampled_from(LAYOUTS).flatmap(node_models), rng=randoms)
def test_summary_of_rendered_tables_is_that_of_the_parse(model: object, rng: random.Random) -> None:
    text = render(model).text  # type: ignore[arg-type]
    assert_summary_of_parse([("node", text)])
    assert_summary_of_parse([("node", random_counters(text, rng))])
    assert_summary_of_parse([("node", mutate_counters(rng, text.encode(), interesting=0.3))])


def random_counters(text: str, rng: random.Random) -> str:
    """Every counter small and random: many denies (entered - accepted - after) go negative,
    and the rules are still the columnar path's."""
    return _COUNTER.sub(lambda _: f"\n[{rng.randint(0, 9)}:{rng.randint(0, 999)}] ", text)


_COUNTER = re.compile(r"\n\[[0-9]+:[0-9]+\] ")


def test_big_tables_are_counted_from_their_plans() -> None:
    """The path is taken (it is not silently the full parse), and its counts are right."""
    text = render(sized_model(40, 6, layout="v3.30", seed=2)).text
    retained = assert_summary_of_parse([("node", text)])
    assert [type(item) for item in retained] == [ColumnarPlan]
    summary = summarize_node([("node", text)])
    assert summary.records == len(parse_node([("node", text)]).records) > 0
    assert summary.kinds[Kind.POLICY_ACCEPT] > 0 and summary.kinds[Kind.POLICY_DENY] > 0
    # Negative denies: planned, then not counted from the plans but parsed.
    recounted = random_counters(text, random.Random(3))
    retained = assert_summary_of_parse([("node", recounted)])
    assert [type(item) for item in retained] == [ColumnarPlan, ParseResult]
    assert any(
        diagnostic.code == "deny_negative" for diagnostic in summarize_node([("n", recounted)]).diagnostics
    )


def test_several_dumps_of_one_node_are_summed() -> None:
    """IPv4 and IPv6 save dumps, nftables JSON, undecodable bytes, a repeated source."""
    model = sized_model(5, 3, layout="v3.30", seed=4)
    v4 = render(model).text
    v6 = render(model.with_options(family=6)).text
    nft = to_nft(v4, 4).json
    broken = v4.encode().replace(b"cali-tw-", b"cali-tw-\xff", 1)
    inputs: list[tuple[str, str | bytes]] = [
        ("v4", v4),
        ("v6", v6),
        ("nft", nft),
        ("bad", broken),
        ("v4", v4),
    ]
    inputs.extend(sample_dumps())
    assert_summary_of_parse(inputs)
    assert_summary_of_parse(inputs, family=6)


def test_parse_command_prints_the_summary_of_the_parse(tmp_path: Path) -> None:
    text = render(sized_model(8, 3, layout="v3.30", seed=6)).text
    lines = text.split("\n")
    lines.insert(5, "garbage line")
    dumps = [tmp_path / "good.save", tmp_path / "bad.save", tmp_path / "latin1.save"]
    dumps[0].write_text(text)
    dumps[1].write_text("\n".join(lines))
    dumps[2].write_bytes(text.encode().replace(b"Policy", b"Pol\xefcy", 1))  # read as bytes: diagnosed
    done = subprocess.run(
        [sys.executable, "-m", "calico_accountant_cli", "parse", "--format", "summary", *map(str, dumps)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = parse_node([(str(path), path.read_bytes()) for path in dumps])
    kinds = Counter(record.key.kind for record in result.records)
    codes = Counter(diagnostic.code for diagnostic in result.diagnostics)
    assert codes["garbled_line"] and codes["not_utf8"], codes
    want = [f"lines: {result.lines_seen}", f"rules: {result.rules_seen}", f"records: {len(result.records)}"]
    want += [f"  {kind.value}: {kinds[kind]}" for kind in Kind]
    want += [f"diagnostics: {sum(codes.values())}"] + [f"  {code}: {codes[code]}" for code in sorted(codes)]
    assert done.stdout.splitlines() == want
    assert len(done.stderr.splitlines()) == len(result.diagnostics)
