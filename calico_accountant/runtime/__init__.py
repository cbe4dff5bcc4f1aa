"""What every calico-accountant process needs around its real work, written once.

* :mod:`.process`: log lines in one format, SIGTERM/SIGINT as an orderly stop, freed
  memory handed back to the system;
* :mod:`.http`: the small threaded HTTP endpoint of both daemons (the agent's
  ``/healthz``, ``/readyz``, ``/metrics``; the aggregator's ``/metrics`` and health);
* :mod:`.web_config`, :mod:`.web_security`: exporter-toolkit's web configuration (TLS,
  basic auth) for that endpoint;
* :mod:`.client_tls`: TLS towards the aggregator, for the agent and the CLI;
* :mod:`.reloading`: a value rebuilt when its files change (certificates, key sets);
* :mod:`.memory`: resident memory held for nothing handed back (glibc's allocator, the
  pages of loaded libraries): the node agent's.

Nothing here imports the services: they use it, never the reverse.
"""
