"""Rules to per-endpoint and per-policy counter records, by felix's chain structure (pure).

Attribution is split in two so the agent's steady state is cheap: planning
(:func:`~node_agent.attribution.planning.plan_table`) works out, from the rules' *shapes*
only, which rule counters make up which record (a
:class:`~node_agent.attribution.plans.RecordPlan` names rule ordinals, "slots");
evaluation then reads the values from a counter array.  When a node's rules have not
changed since the last read, only evaluation runs again.

Exactness rules (see ``docs/attribution.md``):

* policy accept = the ``Return if policy accepted`` rule right after the jump;
* policy deny = entered - accepted - next, by flow conservation inside the endpoint
  chain, and only when it cannot include passed packets (no pass rule in the policy, or
  a pass-guarded ``next``).  Otherwise the record is left out and a ``deny_not_exact``
  diagnostic says why: a number we cannot make exact is not published;
* node-level rule counters come from inside the shared policy chains and are never
  split per endpoint.

Modules, each importing only those above it:

* :mod:`.marks` -- felix's accept and pass mark bits, learned from the table;
* :mod:`.chains` -- what a policy chain says: its verdict rules, identity comment, group
  members and whether it can pass (:class:`~.chains.ChainFacts`, cached per table);
* :mod:`.plans` -- :class:`~.plans.RecordPlan` and its reference evaluation, one plan at a
  time (:func:`~.plans.evaluate`);
* :mod:`.planning` -- a filter table to plans and structural diagnostics, and when a
  deny is exact;
* :mod:`.compiled` -- plans laid out column-wise and evaluated with C-level loops, with
  incremental re-evaluation of changed counters: the agent's steady state.
"""
