"""Names from the network are printed, never obeyed, by the table outputs."""

from __future__ import annotations

import re

from calico_accountant.v1 import hits_pb2 as hpb
from calico_accountant.v1 import snapshot_pb2 as spb
from calico_accountant_cli.commands.top import _Seen, _Window, render
from calico_accountant_cli.hit_format import format_hit_compact, format_hit_json, hit_cells
from calico_accountant_cli.hit_table import HitTable
from calico_accountant_cli.terminal import terminal_safe

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
HOSTILE = "evil\x1b[2J\x1b]0;owned\x07\x9b31m"


def hostile_hit() -> hpb.Hit:
    hit = hpb.Hit(
        node=HOSTILE, namespace=HOSTILE, pod=HOSTILE, verdict="deny", kind=spb.POLICY_DENY, packets=3
    )
    hit.policy.CopyFrom(hpb.PolicyRef(kind="NetworkPolicy", namespace=HOSTILE, name=HOSTILE, tier="default"))
    hit.time.GetCurrentTime()
    return hit


def test_terminal_safe_shows_control_characters() -> None:
    assert terminal_safe("a\x1bb\x9bc\td") == "a\\x1bb\\x9bc\\x09d"
    assert terminal_safe("plain name-1") == "plain name-1"


def test_observe_rows_and_json_carry_no_control_characters() -> None:
    row = "\n".join(HitTable().render([hit_cells(hostile_hit())]))
    assert not CONTROL.search(row.replace("\n", "")) and "evil\\x1b[2J" in row
    compact = format_hit_compact(hostile_hit())
    assert not CONTROL.search(compact) and "evil\\x1b[2J" in compact
    assert not CONTROL.search(format_hit_json(hostile_hit()))


def test_top_frames_carry_no_control_characters() -> None:
    window = _Window(60.0)
    window.add(_Seen(0.0, HOSTILE, HOSTILE, HOSTILE, 5, 500))
    frame = render(window, 1.0, 10, "top")
    assert not CONTROL.search(frame.replace("\n", "")) and "evil\\x1b" in frame
