"""``calico-accountant completion``: the bash script, loaded into a real bash, completes
subcommands, flags and choices from the parsers; zsh and tcsh get a script too."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import cli


def complete(script: Path, *words: str) -> list[str]:
    """What bash offers for the last of ``words`` (``calico-accountant`` first)."""
    quoted = " ".join(f"'{word}'" for word in words)
    program = (
        f"source {script}\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
        'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}\n'
        "_shtab_calico_accountant\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return done.stdout.split()


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    done = cli("completion", "bash")
    assert done.returncode == 0, done.stderr
    path = tmp_path_factory.mktemp("completion") / "calico-accountant.bash"
    path.write_text(done.stdout)
    return path


def test_bash_completes_subcommands_flags_and_choices(bash_script: Path) -> None:
    assert complete(bash_script, "calico-accountant", "ob") == ["observe"]
    assert "completion" in complete(bash_script, "calico-accountant", "")
    assert complete(bash_script, "calico-accountant", "observe", "--out") == ["--output"]
    assert complete(bash_script, "calico-accountant", "observe", "-o", "") == [
        "table",
        "compact",
        "json",
        "jsonpb",
    ]
    assert complete(bash_script, "calico-accountant", "aggregator", "--log-format", "") == ["text", "json"]
    assert "--leader-election" in complete(bash_script, "calico-accountant", "aggregator", "--lea")


def test_bash_completes_file_names_for_file_flags(bash_script: Path, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    offered = complete(bash_script, "calico-accountant", "agent", "--tls-ca", f"{tmp_path}/c")
    assert offered == [f"{tmp_path}/ca.pem"]


@pytest.mark.parametrize(("shell", "marker"), [("zsh", "#compdef calico-accountant"), ("tcsh", "complete")])
def test_other_shells_get_a_script(shell: str, marker: str) -> None:
    done = cli("completion", shell)
    assert done.returncode == 0 and marker in done.stdout and "observe" in done.stdout
    assert cli("completion", "fish").returncode == 2
