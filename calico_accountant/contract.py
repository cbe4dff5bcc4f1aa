"""What clients and servers agree on besides the messages: ports and the API version."""

AGGREGATOR_GRPC_PORT = 9010
"""The aggregator's gRPC port: agents' ingest, the policy-hit API, health."""
AGGREGATOR_METRICS_PORT = 9009
"""The aggregator's ``/metrics``."""
AGENT_HEALTH_PORT = 9012
"""The node agent's ``/healthz``, ``/readyz`` and ``/metrics``."""
DEFAULT_AGGREGATOR_ADDRESS = f"localhost:{AGGREGATOR_GRPC_PORT}"
"""Where agents and the CLI look for the aggregator unless told otherwise."""
HITS_API_VERSION = 1
"""``ServerStatus.api_version`` of the ``calico_accountant.v1`` policy-hit API; a client
checks it once per connection."""
HITS_FEATURES = ("watch_window", "exclude")
"""``ServerStatus.features``: optional request fields added to ``calico_accountant.v1``
after its first release.  A server that ignored them would answer a different question
(every kept hit instead of the last 20, hits the user excluded), so a client that uses
them checks they are listed first."""
AGGREGATOR_HEALTH_PORT = 9011
"""The aggregator's ``/healthz`` and ``/readyz``, served from start to stop, standby included."""

CANARY_KEY = "calico-accountant.io/canary"
"""The policy label or annotation (value ``"true"``) that marks a canary: an allow-all behind
restrictive policies, whose accepts are the traffic they miss (``calico-accountant audit``)."""
