"""The committed protobuf code is exactly what proto/ generates (no hand edits, no drift)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))
    assert protos, "no .proto files found"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            str(ROOT / "proto"),
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *protos,
        ],
        check=True,
        cwd=ROOT / "proto",
    )
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*_pb2*.py*"))
    assert generated
    for relative in generated:
        committed = ROOT / relative
        assert committed.exists(), f"{relative} is generated but not committed (run scripts/gen-proto)"
        assert committed.read_text() == (tmp_path / relative).read_text(), (
            f"{relative} differs from what proto/ generates (run scripts/gen-proto)"
        )
    committed_all = sorted(
        p.relative_to(ROOT) for p in (ROOT / "calico_accountant" / "v1").glob("*_pb2*.py*")
    )
    assert committed_all == generated, "stale generated files without a .proto"
