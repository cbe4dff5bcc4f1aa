"""What is running: version, git revision and Python, for ``calico_accountant_build_info``.

Both daemons export ``calico_accountant_build_info{version, revision, python_version} 1``
so a dashboard can tell which build each pod runs (and a rollout's progress).  The
revision comes from, in order:

1. ``$CALICO_ACCOUNTANT_REVISION``, set when the image is built (``--build-arg``): an
   image carries no ``.git``;
2. ``git rev-parse HEAD`` when the package runs from a source checkout (the directory
   above the package holds ``.git``: an editable install, ``./run demo``);
3. ``unknown``.

Asking git only inside a checkout keeps an installed wheel from reporting the revision of
whatever repository happens to contain its virtualenv.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from calico_accountant import __version__

__all__ = ["REVISION_ENV", "BuildInfo", "build_info", "revision"]

REVISION_ENV = "CALICO_ACCOUNTANT_REVISION"
CHECKOUT = Path(__file__).resolve().parents[2]
"""Where the package's source checkout would be (the repository root)."""


@dataclass(frozen=True, slots=True)
class BuildInfo:
    version: str
    revision: str
    python_version: str

    LABELS = ("version", "revision", "python_version")

    def values(self) -> tuple[str, str, str]:
        return (self.version, self.revision, self.python_version)


def revision(environ: Mapping[str, str] = os.environ, checkout: Path = CHECKOUT) -> str:
    """The git revision as described in the module docstring."""
    given = environ.get(REVISION_ENV, "").strip()
    if given:
        return given
    git = shutil.which("git")
    if git is None or not (checkout / ".git").exists():
        return "unknown"
    try:
        done = subprocess.run(
            [git, "-C", str(checkout), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = done.stdout.strip()
    return text if done.returncode == 0 and text else "unknown"


@functools.cache
def build_info() -> BuildInfo:
    """This process's build (computed once: the revision does not change while it runs)."""
    return BuildInfo(__version__, revision(), platform.python_version())
