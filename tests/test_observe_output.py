"""``observe``'s request and output without a server: the replay the flags ask for,
times, and tables whose columns line up whatever the names (wide, combining, long)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import snapshot_pb2 as spb
from calico_accountant_cli.commands.observe import DEFAULT_LAST, build_request
from calico_accountant_cli.hit_format import HIT_COLUMNS, format_hit_compact, format_hit_json, hit_cells
from calico_accountant_cli.hit_table import HitTable
from calico_accountant_cli.hits_client import ClientError, parse_moment
from calico_accountant_cli.main import build_parser
from calico_accountant_cli.terminal import ColorMode, display_width, use_color

ANSI = re.compile(r"\x1b\[[0-9;]*m")
T = datetime(2026, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)


def args(*argv: str) -> object:
    return build_parser().parse_args(["observe", *argv])


def make_hit(node: str, namespace: str, pod: str, policy: str, verdict: str, packets: int) -> hpb.Hit:
    hit = hpb.Hit(
        node=node,
        namespace=namespace,
        pod=pod,
        verdict=verdict,
        kind=spb.POLICY_DENY if verdict == "deny" else spb.POLICY_ACCEPT,
        direction=spb.INGRESS,
        packets=packets,
        bytes=packets * 60,
    )
    hit.policy.CopyFrom(hpb.PolicyRef(kind="NetworkPolicy", namespace=namespace, name=policy, tier="default"))
    hit.time.FromDatetime(T)
    return hit


def rule_hit(index: int, action: str) -> hpb.Hit:
    hit = hpb.Hit(node="node-b", verdict="deny", kind=spb.POLICY_RULE, direction=spb.EGRESS, packets=7)
    hit.policy.CopyFrom(hpb.PolicyRef(kind="GlobalNetworkPolicy", name="guard", tier="security"))
    hit.rule.CopyFrom(hpb.RuleRef(index=index, action=action))
    hit.time.FromDatetime(T)
    return hit


VARIED = [
    make_hit("node-a", "shop", "web-1", "allow-web", "accept", 3),
    make_hit("ノード-東京", "店舗", "ウェブ-1", "許可", "deny", 12345),  # wide characters: two columns each
    make_hit("n", "cafe\u0301", "e\u0301\u0301-pod", "p", "accept", 1),  # combining accents: none
    make_hit("node-with-a-very-long-name-0123456789", "x" * 40, "🚀-rocket", "policy-" + "y" * 30, "deny", 9),
    rule_hit(3, "deny"),
]


def column_starts(line: str, cells: tuple[str, ...]) -> list[int]:
    """The display column where each cell begins in ``line``."""
    starts, position = [], 0
    for cell in cells:
        found = line.index(cell, position)
        starts.append(display_width(line[:found]))
        position = found + len(cell)
    return starts


def test_table_columns_line_up_for_names_of_any_width() -> None:
    rows = [hit_cells(hit, utc=True) for hit in VARIED]
    lines = HitTable().render(rows)
    assert lines[0].split() == list(HIT_COLUMNS)
    left = [index for index, name in enumerate(HIT_COLUMNS) if name not in ("PACKETS", "BYTES")]
    starts = [column_starts(line, row) for line, row in zip(lines[1:], rows, strict=True)]
    header = column_starts(lines[0], HIT_COLUMNS)
    for index in left:
        assert {row[index] for row in starts} == {header[index]}, HIT_COLUMNS[index]
    # the counts are right-aligned: every line ends in the same column
    assert len({display_width(line) for line in lines}) == 1
    # the widest name sets its column: nothing was cut
    assert "node-with-a-very-long-name-0123456789" in lines[4] and "🚀-rocket" in lines[4]


def test_colour_never_moves_a_column() -> None:
    rows = [hit_cells(hit) for hit in VARIED]
    plain, coloured = HitTable().render(rows), HitTable(color=True).render(rows)
    assert coloured != plain and any("\x1b[31m" in line for line in coloured)
    assert [ANSI.sub("", line) for line in coloured] == plain


def test_a_stream_widens_columns_and_repeats_the_header() -> None:
    table = HitTable()
    first = table.render([hit_cells(VARIED[0])])
    assert len(first) == 2  # header and row
    assert table.render([hit_cells(VARIED[0])]) == first[1:]  # same widths: no new header
    wider = table.render([hit_cells(VARIED[3])])
    assert wider[0].split() == list(HIT_COLUMNS) and len(wider) == 2
    again = table.render([hit_cells(VARIED[0])])
    assert (
        column_starts(again[0], hit_cells(VARIED[0]))
        == column_starts(wider[1], hit_cells(VARIED[3]))[: len(HIT_COLUMNS)]
    )


def test_rule_hits_show_their_rule() -> None:
    cells = dict(zip(HIT_COLUMNS, hit_cells(rule_hit(3, "deny")), strict=True))
    assert cells["RULE"] == "#3 deny" and cells["POLICY"] == "security:guard"
    assert dict(zip(HIT_COLUMNS, hit_cells(VARIED[0]), strict=True))["RULE"] == "-"
    assert '"rule":{"index":3,"action":"deny"}' in format_hit_json(rule_hit(3, "deny"))
    assert "rule #3 deny" in format_hit_compact(rule_hit(3, "deny"))


def test_times_are_local_unless_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    import time

    time.tzset()
    try:
        assert hit_cells(VARIED[0], utc=True)[0] == "May 01 12:00:00.250"
        assert hit_cells(VARIED[0])[0] == "May 01 21:00:00.250"
        assert format_hit_compact(VARIED[0]).startswith("May 01 21:00:00.250 [node-a] shop/web-1 ingress ")
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_colour_modes() -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    tty = Tty()
    assert use_color(ColorMode.AUTO, tty, {}) is True  # type: ignore[arg-type]
    assert use_color(ColorMode.AUTO, tty, {"NO_COLOR": "1"}) is False  # type: ignore[arg-type]
    assert use_color(ColorMode.NEVER, tty, {}) is False  # type: ignore[arg-type]
    assert use_color(ColorMode.AUTO, open(__file__), {}) is False  # noqa: SIM115
    assert use_color(ColorMode.ALWAYS, open(__file__), {}) is True  # noqa: SIM115


def test_without_follow_the_last_twenty_hits() -> None:
    assert build_request(args()).last == DEFAULT_LAST  # type: ignore[arg-type]
    everything = build_request(args("--all"))  # type: ignore[arg-type]
    assert (everything.first, everything.last) == (0, 0)
    assert build_request(args("--first", "5")).first == 5  # type: ignore[arg-type]
    live = build_request(args("-f"))  # type: ignore[arg-type]
    assert (live.follow, live.last) == (True, 0)
    assert build_request(args("-f", "--last", "3")).last == 3  # type: ignore[arg-type]


def test_since_and_until_become_times() -> None:
    before = datetime.now(UTC)
    request = build_request(args("--since", "5m", "--until", "2026-05-01T12:00:00Z"))  # type: ignore[arg-type]
    since = request.since_time.ToDatetime(tzinfo=UTC)
    assert before - timedelta(minutes=5, seconds=1) < since <= datetime.now(UTC) - timedelta(minutes=5)
    assert request.until.ToDatetime(tzinfo=UTC) == datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert request.last == 0  # a time range prints all it holds
    assert parse_moment("2026-05-01T14:00:00+02:00", T) == datetime(2026, 5, 1, 12, tzinfo=UTC)
    with pytest.raises(ClientError, match="bad time"):
        parse_moment("yesterday", T)
    with pytest.raises(ClientError, match="cannot be combined with --follow"):
        build_request(args("-f", "--until", "1m"))  # type: ignore[arg-type]


def test_not_negates_only_the_next_filter() -> None:
    request = build_request(
        args("-n", "shop", "--not", "--verdict", "accept", "--verdict", "deny", "--not", "--pod", "web-1")  # type: ignore[arg-type]
    )
    assert list(request.filter.namespace) == ["shop"] and list(request.filter.verdict) == ["deny"]
    assert [(list(f.verdict), list(f.pod)) for f in request.exclude] == [(["accept"], []), ([], ["web-1"])]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["observe", "--not", "--verdict", "maybe"])
