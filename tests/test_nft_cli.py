"""``calico-accountant parse`` and ``report`` take ``nft -j list table`` files (told from
``iptables-save`` text by content) and print the same records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from calico_accountant_cli.main import main
from tests.support.felix_nft import to_nft
from tests.test_report_cli import DATASTORE, DUMP

NFT_NAMES = {
    f"cali-pi-shop/default.{name}": f"cali-pi-default/shop/default.{name}" for name in ("web", "a", "b")
}
"""The dump's v3.28 chains as felix v3.30 in nftables mode names them (``tier/ns/stored``, unhashed)."""


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]


def _sorted(rows: list[dict[str, Any]]) -> list[str]:
    """Rows in a fixed order (the two dataplanes list chains in different orders)."""
    return sorted(json.dumps(row, sort_keys=True) for row in rows)


@pytest.fixture
def dumps(tmp_path: Path) -> tuple[Path, Path, Path]:
    datastore = tmp_path / "cluster.yaml"
    datastore.write_text(DATASTORE)
    iptables = tmp_path / "node-a.save"
    iptables.write_text(DUMP)
    nft = tmp_path / "node-a.nft"  # the name says nothing: the content tells
    nft.write_text(to_nft(DUMP, 4, NFT_NAMES).json)
    return datastore, iptables, nft


def test_parse_prints_the_same_records_for_nft_json(
    capsys: pytest.CaptureFixture[str], dumps: tuple[Path, Path, Path]
) -> None:
    _, iptables, nft = dumps
    from_iptables = _run(capsys, "parse", "--format", "json", str(iptables))
    from_nft = _run(capsys, "parse", "--format", "json", str(nft))
    for row in from_iptables:
        row["chain"] = NFT_NAMES.get(row["chain"], row["chain"])
        row["group_members"] = [NFT_NAMES.get(m, m) for m in row["group_members"]]
    assert _sorted(from_nft) == _sorted(from_iptables) and len(from_nft) > 10


def test_report_resolves_nft_chain_names_against_the_datastore(
    capsys: pytest.CaptureFixture[str], dumps: tuple[Path, Path, Path]
) -> None:
    datastore, iptables, nft = dumps
    common = ["report", "--datastore", f"file:{datastore}", "--node", "node-a"]
    from_iptables = _run(capsys, *common, str(iptables))
    from_nft = _run(capsys, *common, str(nft))
    assert {row["chain"] for row in from_nft} >= set(NFT_NAMES.values())
    assert len(from_nft) == len(from_iptables) > 10
    for row in (*from_iptables, *from_nft):
        row.pop("chain", None)
    assert _sorted(from_nft) == _sorted(from_iptables)
    assert any((row["policy"] or {}).get("name") == "web" and row["resolved"] for row in from_nft)
