"""The drop-guard shortcut of ``chain_verdicts`` gives what reading the whole body gives.

``_single_guard`` answers felix-form bodies (``-A CHAIN -m comment --comment "cali:ID" REST``)
from REST alone, cached; the property: for any body, in that form or not, the answer is the
one :func:`_single_guard_of_body` reads from the whole body.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from node_agent.attribution.chains import _single_guard, _single_guard_of_body

_WORDS = st.sampled_from(
    [
        "-m mark --mark 0x40000/0x40000",
        "-m mark ! --mark 0x40000/0x40000",
        "-m mark --mark 0x10000/0x10000",
        "--mark 0x1/0x1",
        "!",
        "-p tcp",
        "-s 169.254.0.1/32",
        "-m multiport --dports 80",
        "-m comment --comment x",
        '-m comment --comment "a b"',
        "-j DROP",
        "-j REJECT",
        "-g cali-x",
        "-jDROP",
        '"',
        "",
    ]
)
_TOKEN = st.text(alphabet='ab !-"', max_size=6) | st.sampled_from(
    ["a --mark 0x1/0x1 b", "x -p tcp y", "q ! --mark 0x2/0x2", "k -j DROP"]
)


@given(
    chain=_TOKEN,
    rule_id=_TOKEN,
    rest=st.lists(_WORDS, max_size=5).map(" ".join),
    leading_space=st.booleans(),
    felix_form=st.booleans(),
)
# Found by the whole suite: a "chain" that is "!" reads as a negation in the whole body.
@example(chain="!", rule_id="", rest="-m mark --mark 0x40000/0x40000", leading_space=False, felix_form=True)
def test_single_guard_from_the_rest_matches_the_whole_body(
    chain: str, rule_id: str, rest: str, leading_space: bool, felix_form: bool
) -> None:
    tail = (" " if leading_space else "") + rest
    body = f'-A {chain} -m comment --comment "cali:{rule_id}"{tail}' if felix_form else f"-A {chain} {rest}"
    assert _single_guard(body) == _single_guard_of_body(body)


def test_the_follow_up_drop_is_read_through_its_rest() -> None:
    """The common case hits the shortcut and yields the guard (a check that can fail)."""
    body = '-A cali-pi-x -m comment --comment "cali:abc" -m mark --mark 0x40000/0x40000 -j DROP'
    assert _single_guard(body) == (0x40000, 0x40000, False)
    assert _single_guard(body.replace(" -j DROP", " -p tcp -j DROP")) is None
    # An id with spaces is no felix id: its text counts as the body's (a second guard here).
    odd = body.replace("cali:abc", "cali:a --mark 0x1/0x1 b")
    assert _single_guard(odd) is None
