"""``calico-accountant parse --format summary``, the command itself: files read from a map of
them (a good dump, one with a garbled line, one that is not UTF-8), and what it prints is the
summary of ``parse_node``'s result, its diagnostics on standard error."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from calico_accountant.records import Kind
from node_agent.parsing import parse_node
from tests.support.felix_render import render, sized_model


def test_parse_command_prints_the_summary_of_the_parse(tmp_path: Path) -> None:
    text = render(sized_model(8, 3, layout="v3.30", seed=6)).text
    lines = text.split("\n")
    lines.insert(5, "garbage line")
    dumps = [tmp_path / "good.save", tmp_path / "bad.save", tmp_path / "latin1.save"]
    dumps[0].write_text(text)
    dumps[1].write_text("\n".join(lines))
    dumps[2].write_bytes(text.encode().replace(b"Policy", b"Pol\xefcy", 1))  # read as bytes: diagnosed
    done = subprocess.run(
        [sys.executable, "-m", "calico_accountant_cli", "parse", "--format", "summary", *map(str, dumps)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = parse_node([(str(path), path.read_bytes()) for path in dumps])
    kinds = Counter(record.key.kind for record in result.records)
    codes = Counter(diagnostic.code for diagnostic in result.diagnostics)
    assert codes["garbled_line"] and codes["not_utf8"], codes
    want = [f"lines: {result.lines_seen}", f"rules: {result.rules_seen}", f"records: {len(result.records)}"]
    want += [f"  {kind.value}: {kinds[kind]}" for kind in Kind]
    want += [f"diagnostics: {sum(codes.values())}"] + [f"  {code}: {codes[code]}" for code in sorted(codes)]
    assert done.stdout.splitlines() == want
    assert len(done.stderr.splitlines()) == len(result.diagnostics)
