"""Real ``iptables-save`` dumps from public threads (tests/fixtures/real-dumps, see INDEX.md).

They are excerpts: cut lines, missing declarations, other tables' tails.  What can be
asserted is asserted exactly (the records whose rules are in the excerpt, with their
``cali:`` ids); everything else must only produce diagnostics, never an exception.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from calico_accountant.records import CounterKey, CounterRecord, Direction, Kind, ParseResult
from node_agent.parsing import SteadyStateParser, parse_node

DUMPS = Path(__file__).resolve().parent / "fixtures" / "real-dumps"
ALL_DUMPS = sorted(DUMPS.glob("*.txt"))


def _parse(name: str, extra: str = "") -> ParseResult:
    text = (DUMPS / name).read_text()
    return parse_node([(name, text + extra)])


def _by_key(result: ParseResult) -> dict[CounterKey, CounterRecord]:
    keys = [r.key for r in result.records]
    assert len(keys) == len(set(keys)), "a key appears twice in one parse"
    return {r.key: r for r in result.records}


def _codes(result: ParseResult) -> set[str]:
    return {d.code for d in result.diagnostics}


def test_fixtures_are_present() -> None:
    assert len(ALL_DUMPS) == 4
    assert (DUMPS / "INDEX.md").is_file()


@pytest.mark.parametrize("path", ALL_DUMPS, ids=lambda p: p.name[:2])
def test_every_dump_parses_without_exception_as_text_bytes_and_steady_state(path: Path) -> None:
    raw = path.read_bytes()
    first = parse_node([(path.name, raw)])
    again = parse_node([(path.name, raw.decode())])
    assert [(r.key, r.packets, r.bytes) for r in first.records] == [
        (r.key, r.packets, r.bytes) for r in again.records
    ]
    steady = SteadyStateParser()
    for _ in range(2):
        assert sorted(map(repr, steady.parse([(path.name, raw)]).records)) == sorted(map(repr, first.records))
    assert first.rules_seen > 0
    assert all(d.source == path.name for d in first.diagnostics)


def test_dump01_v2_fw_chain_policy_accept() -> None:
    """Felix 2.2: marks 0x1000000 (accept) / 0x2000000 (pass), ``Start of policies``."""
    result = _parse("01_calico-issue741_v2.2rc_iptables-save-c.txt")
    records = _by_key(result)
    key = CounterKey(
        Kind.POLICY_ACCEPT, 4, Direction.EGRESS, "calibee8ec819d7", "cali-po-_zq488XcrF_lr5o9On9C", "default"
    )
    assert key in records
    assert (records[key].packets, records[key].bytes) == (0, 0)
    assert records[key].rule_ids == ("Aq0-38S_3PEC_cr_",)
    # The policy chain is not in the excerpt: said so, and no deny is guessed.
    assert any(
        d.code == "missing_chain" and "cali-po-_zq488XcrF_lr5o9On9C" in d.message for d in result.diagnostics
    )
    assert key._replace(kind=Kind.POLICY_DENY) not in records
    # The last line is cut mid-rule ("[0:0] -A") and reported at its line.
    cut_line = (DUMPS / "01_calico-issue741_v2.2rc_iptables-save-c.txt").read_text().splitlines().index(
        "[0:0] -A"
    ) + 1
    assert any(d.line == cut_line and d.code in ("garbled_line", "truncated") for d in result.diagnostics)
    # Nothing from the nat-table tail at the top becomes a record.
    assert all(r.key.interface == "calibee8ec819d7" for r in result.records)


def test_dump01_marks_are_learned_not_assumed() -> None:
    """Dump 01 plus a *synthetic* policy chain for its jump target: with felix 2.x bits the
    allow (0x1000000) and pass (0x2000000) verdicts are told apart from what the real rules
    show, and the default 0x10000 means nothing here."""
    chain = "cali-po-_zq488XcrF_lr5o9On9C"
    comment = '-m comment --comment "cali:{}"'
    synthetic = "".join(
        f"{counter} -A {chain} {comment.format(rule_id)} {rest}\n"
        for counter, rule_id, rest in [
            (
                "[4:240]",
                "SyntheticAllow01",
                "-p tcp -m multiport --dports 80 -j MARK --set-xmark 0x1000000/0x1000000",
            ),
            ("[4:240]", "SyntheticReturn1", "-m mark --mark 0x1000000/0x1000000 -j RETURN"),
            ("[2:120]", "SyntheticPass001", "-j MARK --set-xmark 0x2000000/0x2000000"),
            ("[2:120]", "SyntheticReturn2", "-m mark --mark 0x2000000/0x2000000 -j RETURN"),
            ("[0:0]", "SyntheticNotVrdct", "-j MARK --set-xmark 0x10000/0x10000"),
        ]
    )
    result = _parse("01_calico-issue741_v2.2rc_iptables-save-c.txt", synthetic)
    rules = {r.key.rule_index: r for r in result.records if r.key.kind is Kind.POLICY_RULE}
    assert {i: r.key.action for i, r in rules.items()} == {0: "allow", 1: "pass"}
    assert (rules[0].packets, rules[0].bytes, rules[1].packets) == (4, 240, 2)
    assert all(r.key.tier == "default" and r.key.direction is Direction.EGRESS for r in rules.values())
    # It has a pass rule, so the endpoint's deny for it cannot be exact.
    assert "deny_not_exact" in _codes(result)
    assert not any(r.key.kind is Kind.POLICY_DENY for r in result.records)


def test_dump02_v26_two_policies_and_profile_drop() -> None:
    result = _parse("02_calico-issue1129_v2.6rc2_iptables-save-c.txt")
    records = _by_key(result)
    egress = Direction.EGRESS
    first = CounterKey(
        Kind.POLICY_ACCEPT, 4, egress, "calic51e6ca5ae9", "cali-po-___yCYWiB-B993Gu4WEv", "default"
    )
    second = first._replace(chain="cali-po-_l2a5_DDU8iKXgoc8Dav")
    drop = CounterKey(Kind.NO_PROFILE_DROP, 4, egress, "calibc29c0f7c1e")
    assert records[first].rule_ids == ("BIrYYV1z1C0b_F3I",)
    assert records[second].rule_ids == ("cNmrOxtrbW4Mkw5U",)
    assert records[drop].rule_ids == ("TvQKCbVLLQXE-djH",)
    # Profile chains (cali-pri-/cali-pro-) never yield per-rule policy records.
    assert not any(
        r.key.kind is Kind.POLICY_RULE and r.key.chain.startswith("cali-pr") for r in result.records
    )
    assert {r.key.kind for r in result.records} <= {
        Kind.POLICY_ACCEPT,
        Kind.NO_PROFILE_DROP,
        Kind.POLICY_RULE,
    }


# The four rows of dump 04's fragment B (``iptables -L`` output quoted in the issue) written
# back in save form: real hashes, marks and comments; the interface and the counters are
# invented (the paste shows neither).
_DUMP04_CHAIN = "-A cali-tw-eni4fab8e2b1c9"
_DUMP04_ENDPOINT_ROWS = "".join(
    f'{counter} {_DUMP04_CHAIN} -m comment --comment "cali:{rule_id}" {rest}\n'
    for counter, rule_id, rest in [
        ("[5:300]", "rYjWtMya5MVONeA_", "-m mark --mark 0x0/0x20000 -j cali-pi-_DYtwCKMZFWyxK2RhACP"),
        (
            "[0:0]",
            "f3Lcp66ksW43orQR",
            '-m comment --comment "Return if policy accepted" -m mark --mark 0x10000/0x10000 -j RETURN',
        ),
        (
            "[5:300]",
            "qQNQs_DjNEXASAoa",
            '-m comment --comment "Drop if no policies passed packet" -m mark --mark 0x0/0x20000 -j DROP',
        ),
    ]
)


@pytest.mark.parametrize("endpoint_first", [False, True])
def test_dump04_identity_comment_travels_with_its_chain(endpoint_first: bool) -> None:
    fragment = (DUMPS / "04_calico-issue5761_eks_save-c-part.txt").read_text()
    text = _DUMP04_ENDPOINT_ROWS + fragment if endpoint_first else fragment + _DUMP04_ENDPOINT_ROWS
    result = parse_node([("04", text)])
    records = _by_key(result)
    accept = CounterKey(
        Kind.POLICY_ACCEPT, 4, Direction.INGRESS, "eni4fab8e2b1c9", "cali-pi-_DYtwCKMZFWyxK2RhACP", "default"
    )
    assert records[accept].chain_comment == "Policy test/knp.default.default-ingress-egress-deny ingress"
    assert records[accept].rule_ids == ("f3Lcp66ksW43orQR",)
    # The policy has no rules at all (only the comment-carrying rule): nothing it denies
    # explicitly, everything entering it falls to the tier's drop.
    deny = records[accept._replace(kind=Kind.POLICY_DENY)]
    assert (deny.packets, deny.bytes) == (0, 0)
    assert deny.rule_ids == ("rYjWtMya5MVONeA_", "f3Lcp66ksW43orQR", "qQNQs_DjNEXASAoa")
    drop = records[CounterKey(Kind.NO_POLICY_DROP, 4, Direction.INGRESS, "eni4fab8e2b1c9", "", "default")]
    assert (drop.packets, drop.bytes) == (5, 300)
    assert not any(r.key.kind is Kind.POLICY_RULE for r in result.records)
    assert "missing_chain" not in _codes(result)


def test_dump04_fragment_alone() -> None:
    result = _parse("04_calico-issue5761_eks_save-c-part.txt")
    assert result.records == []
    cut = [d for d in result.diagnostics if d.code in ("garbled_line", "truncated")]
    assert [d.line for d in cut] == [4]


def test_dump11_enterprise_save_lines() -> None:
    """Enterprise, tiered hash; no counters (plain iptables-save); the egress line only clears
    the scratch marks 0x180000 and is no verdict."""
    result = _parse("11_tigera-workshop_calico-enterprise_save-lines.txt")
    assert [(r.key.kind, r.key.chain, r.key.rule_index, r.key.action) for r in result.records] == [
        (Kind.POLICY_RULE, "cali-pi-_sQdl6e7ekf9DS2UYNem", 0, "allow")
    ]
    record = result.records[0]
    assert (record.packets, record.bytes, record.key.tier, record.key.family) == (0, 0, "", 4)
    assert record.rule_ids == ("fwIMoHrbCWNN0i6y",)
    assert [d.line for d in result.diagnostics if d.code == "garbled_line"] == [2]  # the shell command line
