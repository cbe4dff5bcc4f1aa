"""Whether a test can run on this machine, and the reason it is skipped when it cannot.

Kernel tests need root (network namespaces, iptables) and their tools on PATH; other
tests need a tool such as ``promtool``.  Use the marks on a test or module, or the
``skip_unless_*`` calls inside a test or fixture when the tools depend on a parameter.
"""

from __future__ import annotations

import os
import shutil

import pytest

_PACKAGES = {
    "ip": "iproute2",
    "ipset": "ipset",
    "openssl": "openssl",
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "etcdctl": "etcd-client",
}
"""The Debian package of a tool, named in the skip reason ("iptables" for any ``ip*tables*``)."""


def _described(tool: str) -> str:
    package = _PACKAGES.get(tool) or ("iptables" if "tables" in tool else None)
    return f"{tool} (Debian package {package})" if package else tool


def missing_tools_reason(*tools: str) -> str | None:
    """None when every one of ``tools`` is on PATH; otherwise which are not."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not missing:
        return None
    return "not installed: " + ", ".join(map(_described, missing))


def kernel_skip_reason(*tools: str) -> str | None:
    """None when running as root with every one of ``tools`` on PATH; otherwise why not."""
    if os.geteuid() != 0:
        return "needs root for network namespaces and iptables"
    return missing_tools_reason(*tools)


def requires_tools(*tools: str) -> pytest.MarkDecorator:
    """Skip unless every one of ``tools`` is on PATH."""
    reason = missing_tools_reason(*tools)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def requires_kernel(*tools: str) -> pytest.MarkDecorator:
    """Skip unless running as root with every one of ``tools`` on PATH."""
    reason = kernel_skip_reason(*tools)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def skip_unless_tools(*tools: str) -> None:
    __tracebackhide__ = True  # the skip is reported at the caller's line
    reason = missing_tools_reason(*tools)
    if reason is not None:
        pytest.skip(reason)


def skip_unless_kernel(*tools: str) -> None:
    __tracebackhide__ = True  # the skip is reported at the caller's line
    reason = kernel_skip_reason(*tools)
    if reason is not None:
        pytest.skip(reason)
