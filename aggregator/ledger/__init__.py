"""Monotonic totals per node and counter, from the raw kernel values the agents report.

A pure state machine (no I/O, no clock: callers pass ``now``).  Agents report *raw*
iptables counters; those restart from zero whenever felix rewrites a rule, and a derived
deny (entered - accepted - next) restarts in a way that cannot always be told apart
from traffic.  The ledger turns the raw values into totals that never decrease and never
count a packet twice, and reports every increase so the hit API can stream it.

Which snapshots apply (:meth:`.ledger.Ledger.check`, the one place this is decided):

* snapshots of one agent instance carry increasing sequence numbers, and the first one
  an instance sends is full.  A snapshot not newer than the last one applied from its
  instance, a delta that does not follow it, or a delta from an instance whose full
  snapshot was never applied is refused (counted; ingest asks the agent for a full
  resync).  A new instance (agent restart) starts over with a full snapshot;
* memory is bounded whatever the agents send: a snapshot that would take the ledger past
  its node cap, a node past its counter cap, or that names more distinct diagnostic
  codes than the cap, is refused whole (counted; nothing of it is kept).

Rules, per (node, :class:`~calico_accountant.records.CounterKey`):

* the node's first snapshot since this aggregator started (or since it forgot the node)
  seeds the baselines.  What it counts depends on :class:`.state.FirstSnapshot`: the running
  aggregator takes it as the baseline only (``BASELINE``: totals start at zero, so a
  restart never makes a series jump to a lower non-zero value), while one-shot analysis
  of a dump counts the raw values (``COUNT``: kernel counters count since the rule was
  created).  Either way the increases are flagged ``initial``;
* a key never seen before on a known node: its raw value is its first increase (the rule
  is new, its counter started at zero);
* same ``rule_ids`` and raw ≥ last: the difference;
* same ``rule_ids`` and raw < last (packets or bytes): the counter was reset, add the raw;
* every rule id different (rule rewritten, interface recreated): a new counter, add the raw;
* some ids of a multi-rule derived counter changed (a POLICY_DENY's next rule was
  replaced): the interval cannot be computed exactly, so add nothing, take the raw as
  the new baseline and count it in ``inexact_resets``;
* a new agent instance (agent restart) changes nothing: kernel counters did not reset,
  identical raws add zero;
* a key missing from a full snapshot, or listed as removed in a delta, is *retired*: its
  totals stay (node and cluster sums keep them forever), it comes back to life with the
  rules above if it reappears, and :meth:`.ledger.Ledger.expire` hands it over after a grace
  period so its per-workload series can be removed;
* a node that has had no stream and no snapshot for ``node_expiry`` seconds is forgotten
  whole (:meth:`.ledger.Ledger.forget_nodes`): its counters are handed over so that its own
  series can leave while the cluster sums keep what it counted.

Counters sent by key id (the dictionary encoding of :mod:`calico_accountant.wire.keyed`)
follow the same rules; ids the node's table does not hold, or an id defined again for another
key, refuse the snapshot with a resync request, like a sequence gap (:mod:`.keyed`).

Modules: :mod:`.state` (what the ledger hands out), :mod:`.rows` (a node's counters as columns
by row: what it keeps), :mod:`.views` (those counters seen from outside, copied),
:mod:`.admission` (which snapshots it accepts), :mod:`.counting` (one whole counter's rules),
:mod:`.keyed` (key ids), :mod:`.ledger` (the state machine).
"""
