"""The Dockerfiles, checked without Docker (none runs here): a pinned slim base, two stages
with only the virtualenv crossing into the final one, every COPY source present, every
package setuptools would ship copied, dependencies installed from a lock with hashes that
satisfies pyproject.toml, the entry points real, OCI labels, and the agent's tools.  And the
dev lock: `./run` installs the dev extras constrained by requirements/dev.lock, which pins
every one of them exactly."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from calico_accountant.contract import (
    AGENT_HEALTH_PORT,
    AGGREGATOR_GRPC_PORT,
    AGGREGATOR_HEALTH_PORT,
    AGGREGATOR_METRICS_PORT,
)
from tests.support.processes import REPO

IMAGES = {
    "Dockerfile.agent": ("agent", {AGENT_HEALTH_PORT}),
    "Dockerfile.aggregator": (
        "aggregator",
        {AGGREGATOR_GRPC_PORT, AGGREGATOR_METRICS_PORT, AGGREGATOR_HEALTH_PORT},
    ),
}
PINNED_BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|build-essential|make|pip wheel|python3-dev|setuptools)\b")
OCI_LABELS = {"title", "description", "source", "licenses", "version", "revision"}
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


@dataclass
class Stage:
    base: str
    name: str = ""
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def commands(self, keyword: str) -> list[str]:
        return [argument for k, argument in self.instructions if k == keyword]


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """A Dockerfile's global ARG defaults and its stages (continuations joined, comments out)."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        pending += raw.rstrip().removesuffix("\\") + " " if raw.rstrip().endswith("\\") else raw
        if not raw.rstrip().endswith("\\"):
            lines.append(pending.strip())
            pending = ""
    arguments: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = rest.split()
            image = re.sub(r"\$\{(\w+)\}", lambda m: arguments[m.group(1)], words[0])
            stages.append(Stage(image, words[2] if len(words) > 2 and words[1].upper() == "AS" else ""))
        elif keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            arguments[name] = default
        else:
            stages[-1].instructions.append((keyword, rest))
    return arguments, stages


def _lock(name: str) -> dict[str, tuple[str, int]]:
    """requirements/NAME: {package: (version, number of hashes)}."""
    pins: dict[str, tuple[str, int]] = {}
    current = ""
    for line in (REPO / "requirements" / name).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", line)
        if match:
            current = match.group(1).lower().replace("_", "-")
            pins[current] = (match.group(2), 0)
        elif "--hash=sha256:" in line and current:
            version, hashes = pins[current]
            pins[current] = (version, hashes + 1)
    return pins


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_two_stages_on_a_pinned_slim_python(dockerfile: str) -> None:
    _, stages = parse(REPO / dockerfile)
    assert len(stages) == 2 and stages[0].name == "build"
    for stage in stages:
        assert PINNED_BASE.match(stage.base), stage.base
    final = stages[-1]
    copies = final.commands("COPY")
    assert copies == ["--from=build /opt/venv /opt/venv"], "only the virtualenv crosses into the final stage"
    for command in final.commands("RUN"):
        assert not BUILD_TOOLS.search(command), command


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_every_copied_path_exists_and_every_shipped_package_is_copied(dockerfile: str) -> None:
    _, stages = parse(REPO / dockerfile)
    copied: set[str] = set()
    for stage in stages:
        for argument in stage.commands("COPY"):
            words = shlex.split(argument)
            if any(w.startswith("--from=") for w in words):
                continue
            for source in words[:-1]:
                assert (REPO / source).exists(), f"{dockerfile}: COPY {source}: no such path"
                copied.add(source)
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    # setuptools' find: the top-level packages whose names match the include patterns
    top_level = {
        p.parent.name for p in REPO.glob("*/__init__.py") if any(fnmatch(p.parent.name, i) for i in include)
    }
    assert top_level <= copied, f"packages setuptools ships but the image lacks: {top_level - copied}"
    assert {"pyproject.toml", PYPROJECT["project"]["readme"]} <= copied


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_dependencies_come_from_the_hashed_locks(dockerfile: str) -> None:
    _, stages = parse(REPO / dockerfile)
    runs = " ".join(stages[0].commands("RUN"))
    assert "--require-hashes -r requirements/runtime.lock" in runs
    assert "--require-hashes -r requirements/build.lock" in runs
    assert "--no-deps --no-build-isolation" in runs  # the wheel, built with the locked tools only
    assert "install --no-deps /wheels/" in runs  # the project itself, from the built wheel


def test_the_runtime_lock_satisfies_pyproject_with_a_hash_for_every_pin() -> None:
    pins = _lock("runtime.lock")
    for text in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in requirements/runtime.lock: run scripts/lock-requirements"
        assert requirement.specifier.contains(pins[name][0]), (
            f"{name}=={pins[name][0]} does not satisfy {text}"
        )
        for extra in requirement.extras:  # PyJWT[crypto]: cryptography
            assert extra != "crypto" or "cryptography" in pins
    assert all(hashes > 0 for _, hashes in pins.values()), "a pin without a hash"


def test_the_build_lock_satisfies_the_build_system() -> None:
    pins = _lock("build.lock")
    for text in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(text)
        name = requirement.name.lower()
        assert name in pins and requirement.specifier.contains(pins[name][0]), text
    assert all(hashes > 0 for _, hashes in pins.values())


DEV_LOCK_COMMAND = (
    "pip-compile --allow-unsafe --extra=dev --no-emit-find-links --no-emit-index-url "
    "--no-emit-trusted-host --output-file=requirements/dev.lock --strip-extras pyproject.toml"
)


def _unpinned_lines(name: str) -> list[str]:
    """requirements/NAME's requirement lines that are not NAME==VERSION (comments, blank lines
    and a pin's continuation lines aside)."""
    return [
        line
        for line in (REPO / "requirements" / name).read_text().splitlines()
        if line.strip()
        and not line.lstrip().startswith(("#", "--hash"))
        and not re.match(r"^[A-Za-z0-9_.\-]+==[^\s\\;*]+(\s*\\)?$", line)
    ]


def test_the_dev_lock_pins_every_dev_extra_and_runtime_dependency_exactly() -> None:
    """A clean clone's lint, types and tests run with the versions they passed with, whatever is
    released that day: every requirement of the dev extras and of the project is in the lock,
    pinned with ==, and the pin satisfies pyproject.toml (an exact pin there, such as
    grpcio-tools', is the lock's version)."""
    pins = _lock("dev.lock")
    assert _unpinned_lines("dev.lock") == [], "requirements/dev.lock may only hold NAME==VERSION lines"
    dev = PYPROJECT["project"]["optional-dependencies"]["dev"]
    for text in [*dev, *PYPROJECT["project"]["dependencies"]]:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in requirements/dev.lock: regenerate it (its header's command)"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements/dev.lock: {name}=={version} does not satisfy {text}"
        )
        for spec in requirement.specifier:
            if spec.operator in ("==", "==="):
                assert version == spec.version, f"requirements/dev.lock: {name}=={version}, {text}"
    (tools,) = [Requirement(text) for text in dev if Requirement(text).name == "grpcio-tools"]
    assert str(tools.specifier) == f"=={pins['grpcio-tools'][0]}", "grpcio-tools: one exact pin in both"


def test_the_dev_lock_says_how_it_was_made() -> None:
    """Regenerated by the command in its header (pip-compile from pyproject.toml's dev extra for
    Python 3.11, without extras: pip refuses extras in a constraints file)."""
    header = (REPO / "requirements" / "dev.lock").read_text().split("\n\n", 1)[0].splitlines()
    assert "# This file is autogenerated by pip-compile with Python 3.11" in header
    assert f"#    {DEV_LOCK_COMMAND}" in header


def test_run_installs_the_dev_extras_constrained_by_the_dev_lock() -> None:
    """Every pip install in ./run (CI's .ci/run runs it) goes through requirements/dev.lock, and
    a changed lock reinstalls (it is in the set-up's stamp)."""
    script = (REPO / "run").read_text()
    installs = [line for line in script.splitlines() if re.search(r"\bpip install\b", line)]
    assert any("'.[dev]'" in line for line in installs)
    for line in installs:
        assert "-c requirements/dev.lock" in line, line
    (stamp,) = [line for line in script.splitlines() if line.strip().startswith("want=")]
    assert "pyproject.toml" in stamp and "requirements/dev.lock" in stamp


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_the_entry_point_runs_the_right_command(dockerfile: str) -> None:
    command, ports = IMAGES[dockerfile]
    _, stages = parse(REPO / dockerfile)
    final = stages[-1]
    (entrypoint,) = final.commands("ENTRYPOINT")
    script, subcommand = json.loads(entrypoint)  # the exec form is a JSON list
    assert script in PYPROJECT["project"]["scripts"] and subcommand == command
    module = PYPROJECT["project"]["scripts"][script].split(":")[0]
    result = subprocess.run(
        [sys.executable, "-m", module.removesuffix(".main"), subcommand, "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (exposed,) = final.commands("EXPOSE")
    assert {int(port) for port in exposed.split()} == ports


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_oci_labels(dockerfile: str) -> None:
    _, stages = parse(REPO / dockerfile)
    labels = " ".join(stages[-1].commands("LABEL"))
    found = set(re.findall(r"org\.opencontainers\.image\.(\w+)=", labels))
    assert found >= OCI_LABELS, OCI_LABELS - found
    assert f'org.opencontainers.image.licenses="{PYPROJECT["project"]["license"]}"' in labels


def test_the_agent_image_carries_both_iptables_backends_and_nft() -> None:
    _, stages = parse(REPO / "Dockerfile.agent")
    runs = " ".join(stages[-1].commands("RUN"))
    packages = set(re.findall(r"\b(iptables|nftables)=\S+", runs))
    assert packages == {"iptables", "nftables"}  # bookworm's iptables ships -legacy and -nft
    users = stages[-1].commands("USER")
    assert users == []  # uid 0: iptables checks it as well as the capability
    _, aggregator = parse(REPO / "Dockerfile.aggregator")
    assert aggregator[-1].commands("USER") == ["65532:65532"]


@pytest.mark.parametrize("dockerfile", IMAGES)
def test_the_image_reports_the_revision_it_was_built_from(dockerfile: str) -> None:
    """build_info's revision label comes from $CALICO_ACCOUNTANT_REVISION in an image (no .git
    there): the final stage sets it from the REVISION build argument it declares."""
    _, stages = parse(REPO / dockerfile)
    final = stages[-1]
    assert any(rest.startswith("REVISION") for rest in final.commands("ARG"))
    assert any("CALICO_ACCOUNTANT_REVISION=${REVISION}" in rest for rest in final.commands("ENV"))
