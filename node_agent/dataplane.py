"""Which of felix's dataplanes to read: iptables (legacy or nft backend) or native nftables.

Felix programs Calico's policy either into iptables (``FELIX_IPTABLESBACKEND``) or, in
nftables mode (``nftablesMode``: GA in v3.31, ``Auto`` and on with an nftables kube-proxy
from v3.32), into ``table ip calico`` and ``table ip6 calico``; then ``iptables-save``
shows nothing of it.  ``auto`` reads nftables when ``table ip calico`` holds Calico chains
(``filter-cali-...``), else iptables the way felix chooses its backend.  During a
migration both may hold Calico chains for a while: felix in nftables mode enforces with
nftables, so that is what is read, and the choice says so (:attr:`DataplaneChoice.note`).
"""

from __future__ import annotations

import enum
import shutil
from dataclasses import dataclass

from node_agent.reader import (
    Backend,
    ReadError,
    default_commands,
    detect_backend,
    gather_evidence,
    run_command,
)

__all__ = [
    "Dataplane",
    "DataplaneChoice",
    "choose_dataplane",
    "decide_dataplane",
    "nft_commands",
    "nft_has_calico_chains",
]


class Dataplane(enum.StrEnum):
    AUTO = "auto"
    IPTABLES = "iptables"
    NFTABLES = "nftables"


@dataclass(frozen=True, slots=True)
class DataplaneChoice:
    dataplane: Dataplane
    """What is read: IPTABLES or NFTABLES."""
    commands: tuple[str, ...]
    note: str
    """Why, in words for the log (e.g. that both held Calico chains)."""
    migrating: bool = False
    """Both nftables and iptables hold Calico chains: the agent logs it as a warning."""


def nft_commands(*, ipv6: bool = True) -> list[str]:
    """``nft -j list table ip calico`` (and ``ip6``): felix's two nftables tables."""
    families = ("ip", "ip6") if ipv6 else ("ip",)
    return [f"nft -j list table {family} calico" for family in families]


def nft_has_calico_chains(output: bytes) -> bool:
    """Whether ``nft -j list table ip calico`` output holds felix's filter-layer chains."""
    return b'"filter-cali-' in output


def decide_dataplane(
    wanted: Dataplane, nft_listing: bytes | None, iptables_has_calico: bool
) -> tuple[Dataplane, str]:
    """What to read and why (pure): ``nft_listing`` is ``nft -j list table ip calico``'s output
    (None when it failed: no such table, or no ``nft``), ``iptables_has_calico`` whether
    felix's iptables backend holds ``cali-`` chains."""
    if wanted is Dataplane.NFTABLES:
        return Dataplane.NFTABLES, "--dataplane nftables"
    if wanted is Dataplane.IPTABLES:
        return Dataplane.IPTABLES, "--dataplane iptables"
    if nft_listing is None or not nft_has_calico_chains(nft_listing):
        return Dataplane.IPTABLES, "no Calico chains in table ip calico"
    if iptables_has_calico:
        return Dataplane.NFTABLES, (
            "both table ip calico and iptables hold Calico chains (a migration, or leftovers): "
            "reading nftables, which felix in nftables mode enforces with"
        )
    return Dataplane.NFTABLES, "table ip calico holds Calico chains"


async def choose_dataplane(
    setting: str, iptables_backend: str, *, ipv6: bool = True, timeout: float = 30.0
) -> DataplaneChoice:
    """The dataplane and its commands, for ``--dataplane`` ``setting`` (see the module docstring)."""
    wanted = Dataplane(setting.strip().lower() or "auto")
    listing: bytes | None = None
    if wanted is Dataplane.AUTO and shutil.which("nft") is not None:
        try:
            listing = (await run_command(nft_commands(ipv6=False)[0], timeout)).stdout
        except ReadError:
            listing = None  # no table ip calico: not in nftables mode
    backend = Backend.LEGACY
    iptables_calico = False
    if wanted is not Dataplane.NFTABLES:
        backend = await detect_backend(iptables_backend, timeout)
        if listing is not None and nft_has_calico_chains(listing):
            iptables_calico = await _iptables_has_calico(backend, timeout)
    dataplane, note = decide_dataplane(wanted, listing, iptables_calico)
    if dataplane is Dataplane.NFTABLES:
        migrating = iptables_calico and wanted is Dataplane.AUTO
        return DataplaneChoice(dataplane, tuple(nft_commands(ipv6=ipv6)), note, migrating)
    commands = tuple(default_commands(backend, ipv6=ipv6))
    return DataplaneChoice(
        dataplane, commands, f"{note}; iptables backend {backend.value} (setting {iptables_backend})"
    )


async def _iptables_has_calico(backend: Backend, timeout: float) -> bool:
    binary = f"iptables-{backend.value}-save"
    if shutil.which(binary) is None:
        binary = "iptables-save"
    try:
        output = await run_command(binary, timeout)
    except ReadError:
        return False
    return gather_evidence(output.stdout).cali_lines > 0
