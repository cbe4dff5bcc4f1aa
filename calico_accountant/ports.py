"""The well-known ports, one definition for the services, the CLI and the manifests' docs."""

AGGREGATOR_GRPC_PORT = 9010
"""The aggregator's gRPC port: agents' ingest, the policy-hit API, health."""
AGGREGATOR_METRICS_PORT = 9009
"""The aggregator's ``/metrics``."""
AGENT_HEALTH_PORT = 9012
"""The node agent's ``/healthz``, ``/readyz`` and ``/metrics``."""
DEFAULT_AGGREGATOR_ADDRESS = f"localhost:{AGGREGATOR_GRPC_PORT}"
"""Where agents and the CLI look for the aggregator unless told otherwise."""
