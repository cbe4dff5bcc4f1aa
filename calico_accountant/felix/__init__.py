"""What felix writes into the dataplane, known once for the agent and the aggregator.

:mod:`.chains` is the layout (chain prefixes, the marker comments felix puts on its
rules, identity comments); :mod:`.naming` is felix's chain-name algorithm for every
Calico version.  Both are pure: strings in, strings out.
"""
