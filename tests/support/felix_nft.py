"""The nft oracle's expectations: :mod:`calico_accountant_cli.lab.nft_rules` renders felix's
nftables layout from the iptables oracles' tables; this says what the nft parse of it must
give, from the iptables oracle's expected records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from calico_accountant_cli.lab.nft_rules import COMMENT_MAX, NftRendering, nft_comment, to_nft

__all__ = ["IDENTITY_SHARE", "NftRendering", "nft_comment", "nft_records", "to_nft"]


IDENTITY_SHARE = COMMENT_MAX - len("cali:0123456789abcdef;") - 1
"""What is left of a policy chain's first comment for felix's identity comment: its share
is 106, but the space before it and the cut of the whole at 128 leave 105."""


def nft_records(records: list[Any], rename: Mapping[str, str]) -> list[Any]:
    """The oracle's iptables expectations as the nft parse must give them: chains renamed,
    and identity comments that felix's 128-character nft comment cut are gone."""
    out = []
    for record in records:
        key = record.key._replace(chain=rename.get(record.key.chain, record.key.chain))
        comment = record.chain_comment if len(record.chain_comment) <= IDENTITY_SHARE else ""
        members = tuple(rename.get(member, member) for member in record.group_members)
        out.append(record._replace(key=key, chain_comment=comment, group_members=members))
    return out
