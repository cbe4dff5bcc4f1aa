"""Who may talk to the aggregator, and about what.

* :mod:`.identity`: who the peer of a call is, as its transport proved it (a client
  certificate's names, or a verified ServiceAccount token);
* :mod:`.access`: what an identity may do: ingest for exactly one node (the one its
  identity names), read the policy-hit API, see agent instance ids;
* :mod:`.credentials`: the gRPC port's TLS certificate, re-read when cert-manager renews it;
* :mod:`.port`: the three put together for the server: how it listens, its one
  ``Identify``, and the rules, enforced exactly when identities are checked.
* :mod:`.tokens` (verifying ServiceAccount tokens) with :mod:`.jwks` (the issuer's keys,
  from a file or a URL), and :mod:`.callers`: the server's ``identify``, token first, then
  client certificate.

With neither client certificates nor tokens configured nothing is enforced (the demo,
and clusters that guard port 9010 with a NetworkPolicy only).
"""
