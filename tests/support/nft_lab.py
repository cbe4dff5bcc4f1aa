"""Loading and listing Calico's nft table in a test's network namespace (Debian's ``nft``)."""

from __future__ import annotations

import subprocess

__all__ = ["list_command", "list_table", "load"]


def load(namespace: str, family: int, script: str) -> None:
    """Replace ``table ip[6] calico`` in ``namespace`` by ``script`` (one ``nft -f`` transaction)."""
    family_name = "ip" if family == 4 else "ip6"
    reset = f"table {family_name} calico {{}}\ndelete table {family_name} calico\n"
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, "nft", "-f", "-"],
        input=reset + script,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"nft -f failed: {done.stderr[:2000]}"


def list_command(namespace: str, family: int) -> str:
    """The agent's ``--nft-list`` command for this namespace and family."""
    return f"ip netns exec {namespace} nft -j list table {'ip' if family == 4 else 'ip6'} calico"


def list_table(namespace: str, family: int) -> str:
    """``nft -j list table ip[6] calico`` as Debian's nft prints it."""
    done = subprocess.run(
        list_command(namespace, family).split(), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"nft -j list failed: {done.stderr[:2000]}"
    return done.stdout
