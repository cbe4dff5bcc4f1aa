"""Reading what a running aggregator or agent serves over HTTP(S): a page, and the samples
of one metric in a Prometheus text exposition."""

from __future__ import annotations

import base64
import re
import ssl
import urllib.error
import urllib.request


def http_fetch(
    url: str,
    timeout: float = 5.0,
    *,
    context: ssl.SSLContext | None = None,
    auth: tuple[str, str] | None = None,
) -> tuple[int, dict[str, str], str]:
    """Status, headers and body of a GET (an HTTP error status is returned, not raised);
    ``context`` for https, ``auth`` (user, password) for basic auth."""
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return int(response.status), dict(response.headers.items()), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), dict(error.headers.items()), error.read().decode()


def http_get(
    url: str,
    timeout: float = 5.0,
    *,
    context: ssl.SSLContext | None = None,
    auth: tuple[str, str] | None = None,
) -> tuple[int, str]:
    """Status and body of a GET (see :func:`http_fetch`)."""
    status, _, body = http_fetch(url, timeout, context=context, auth=auth)
    return status, body


def metric_samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one metric name from an exposition: {sorted label pairs: value}."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", re.MULTILINE)
    for match in pattern.finditer(text):
        labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or "")))
        out[labels] = float(match.group(2))
    return out
