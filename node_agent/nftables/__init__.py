"""Calico's native nftables dataplane (felix ``nftablesMode``): ``nft -j`` output to records.

Felix (v3.29 tech preview, GA v3.31, default where kube-proxy runs nftables from v3.32)
programs one ``table ip calico`` and one ``table ip6 calico``; ``iptables-save`` then
shows nothing of Calico's policy.  The records are the iptables parser's, by the same
attribution code: the nft rules are read as their iptables twins.

Modules, each importing only those above it:

* :mod:`.document` -- the JSON taken apart into tables, chains, rules and maps;
* :mod:`.statements` -- one rule's statements as its iptables twin (target, mark
  guards, ``--set-xmark``, counters);
* :mod:`.translate` -- the ``filter-`` layer of a table as a filter table, comments
  split into rule id and text, endpoint interfaces from the dispatch verdict maps;
* :mod:`.parse` -- records from an input, with a fast path when only counters moved.
"""
