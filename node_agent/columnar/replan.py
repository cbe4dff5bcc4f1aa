"""Which chains a re-parse after churn plans again (:mod:`node_agent.columnar.incremental`).

Why apart: this is the part of a re-parse that decides what it can vouch for.  The plans of
an endpoint chain depend only on its rules, the chains it jumps to (their verdicts, members,
comments) and felix's mark bits; so it is re-planned when it changed or is new, when it jumps
to a chain that changed, came or went (or to one that does, transitively), or when the mark
bits are learned from it; with it, every chain it jumps to (and so on), the groups (the tiers
of their members come from every jump to them) and the policy chains that changed (their
``policy_rule`` plans).  Every other chain's plans are the previous read's.  Mark bits that
changed return None (the caller parses the whole text cold).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from calico_accountant.felix.chains import GROUP_CHAIN_PREFIXES
from calico_accountant.felix.endpoints import endpoint_chain
from node_agent.attribution.marks import learn_marks_from
from node_agent.columnar import ColumnarParse
from node_agent.columnar.chain_diff import POLICY_PREFIXES, Layout, check_plain, dependents, referrers
from node_agent.iptables_save import Rule, new_rule, target_of

__all__ = ["Replan", "chains_to_replan"]

MANY_CHANGED = 64
"""More chains changed, came or went than this: the caller parses the whole text cold.  The
chains that depend on a changed one are searched for once per changed name (in the text of
the chains other than endpoint chains, and for a changed jump target of an endpoint chain in
the whole text): a few milliseconds a name on a big node, so past a few dozen names (felix
re-rendering much of the table) the cold parse, one pass over the text, is cheaper."""

MANY_TARGETS = 8
"""More changed chains than this that endpoint chains jump to (policy chains): the caller
parses the whole text cold.  Each is searched for in the whole text (the endpoint chains that
jump to it are re-planned), 5-10 ms a name on a big node."""


@dataclass(slots=True)
class Replan:
    """The runs of a re-read table to plan again, and what the re-parse needs with them."""

    included: set[int]
    """The runs to plan again (their indexes in the layout)."""
    endpoint: list[bool]
    """Whether each run is an endpoint chain."""
    where: dict[str, int]
    """Each run's index by its chain's name."""
    endpoint_targets: set[str]
    """What the rules of endpoint chains jump or go to (a superset): the chains whose
    change can change an endpoint chain's plans."""
    replanned: int
    """How many of them are endpoint chains."""


def _endpoint_column(layout: Layout, old_endpoint: list[bool]) -> list[bool]:
    """Whether each run is an endpoint chain: the previous read's flags a span at a time,
    worked out for the other runs."""
    endpoint: list[bool] = []
    done = 0
    for span in layout.spans:
        endpoint += (endpoint_chain(name) is not None for name in layout.names[done : span.start])
        first = layout.old[span.start]
        endpoint += old_endpoint[first : first + span.stop - span.start]
        done = span.stop
    endpoint += (endpoint_chain(name) is not None for name in layout.names[done:])
    return endpoint


def chains_to_replan(
    framed: str, head: str, pieces: list[str], layout: Layout, declared: set[str], previous: ColumnarParse
) -> Replan | None:
    """The runs of ``layout`` (a re-read table's chains, its rule lines ``pieces``, its
    text ``framed`` with ``head`` before the rules) to plan again; None when the mark bits
    changed or too many chains did (:data:`MANY_CHANGED`, :data:`MANY_TARGETS`).
    :class:`~node_agent.columnar.rows.Irregular` where the cold parse would turn a changed
    chain down."""
    names, starts, lengths, fresh = layout.names, layout.starts, layout.lengths, layout.fresh
    endpoint = _endpoint_column(layout, previous.endpoint)

    # What changed, came or went, and (transitively) the chains that mention it.
    changed = set(map(names.__getitem__, fresh))
    changed.update(set(previous.names).difference(names))
    changed.update(declared ^ previous.declared)
    if len(changed) > MANY_CHANGED:
        return None
    replan: set[int] = {index for index in fresh if endpoint[index]}
    changed |= dependents(pieces, layout, endpoint, changed)
    changed_targets = changed & previous.endpoint_targets
    if len(changed_targets) > MANY_TARGETS:
        return None
    if changed_targets:
        replan.update(index for index in referrers(framed, changed_targets, starts, head) if endpoint[index])

    # The endpoint chains felix's mark bits are learned from (as far as the learning reads).
    read: list[int] = []

    def endpoint_rules() -> Iterator[tuple[str, list[Rule]]]:
        for index in itertools.compress(itertools.count(), endpoint):
            read.append(index)
            yield (
                names[index],
                [
                    new_rule((target_of(body), body, 0, 0, ""))
                    for body in pieces[starts[index] : starts[index] + lengths[index]]
                ],
            )

    if learn_marks_from(endpoint_rules()) != previous.marks:
        return None
    replan.update(read)

    # The re-parsed table: those endpoint chains, every chain they jump to (and so on), the
    # groups (the tiers of their members come from every jump to them) and the other chains
    # that changed.  The other chains' plans are the previous read's.
    where = dict(zip(names, itertools.count()))
    included_set = set(replan)
    for name in changed:
        index = where.get(name, -1)
        if index == -1 or endpoint[index]:
            continue
        if name.startswith(POLICY_PREFIXES):
            included_set.add(index)  # its policy_rule plans
        elif layout.old[index] == -1:
            # No plans of its own (a dispatch chain, cali-FORWARD...): only what the cold
            # parse would check of its lines, so that it takes the same path.
            check_plain(name, pieces[starts[index] : starts[index] + lengths[index]], declared)
    included_set.update(
        itertools.compress(
            itertools.count(), map(str.startswith, names, itertools.repeat(GROUP_CHAIN_PREFIXES))
        )
    )
    pending = list(included_set)
    endpoint_targets = set(previous.endpoint_targets)
    while pending:
        index = pending.pop()
        targets = set(map(target_of, pieces[starts[index] : starts[index] + lengths[index]]))
        if endpoint[index]:
            endpoint_targets |= targets
        for target in targets:
            found = where.get(target)
            if found is not None and not endpoint[found] and found not in included_set:
                included_set.add(found)
                pending.append(found)
    return Replan(included_set, endpoint, where, endpoint_targets, len(replan))
