"""What the policy and rule info families cost: rendering every rule of a big datastore once
per catalog, and a scrape's copy of the cached rows (``python -m bench.policy_info_bench``).

Policies are synthetic NetworkPolicies with ``--rules`` rules each (selectors, CIDR lists and
ports, some long enough to be cut).  Prints milliseconds (best of 5) and the exposition size;
a measurement, nothing asserts a speed."""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest

from aggregator.catalog.index import Catalog
from aggregator.datastore.objects import object_from_manifest
from aggregator.metrics.policy_info import PolicyInfoCollector, policy_info_rows, rule_info_rows


def _catalog(policies: int, rules: int) -> Catalog:
    documents = []
    for i in range(policies):
        documents.append(
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "NetworkPolicy",
                "metadata": {"name": f"policy-{i}", "namespace": f"ns-{i % 50}"},
                "spec": {
                    "order": i,
                    "selector": f"app == 'app-{i}'",
                    "ingress": [
                        {
                            "action": "Allow",
                            "protocol": "TCP",
                            "source": {
                                "selector": " || ".join(f"app == 'client-{i}-{k}'" for k in range(r % 8 + 1)),
                                "nets": [f"10.{r}.{k}.0/24" for k in range(r % 6)],
                            },
                            "destination": {"ports": [8000 + k for k in range(r % 5 + 1)]},
                        }
                        for r in range(rules)
                    ],
                },
            }
        )
    objects = [o for o in (object_from_manifest(d) for d in documents) if o is not None]
    return Catalog.from_objects(objects)


def _best(run: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def _render(catalog: Catalog) -> object:
    return policy_info_rows(catalog), rule_info_rows(catalog)


def _constant(catalog: Catalog) -> Callable[[], Catalog]:
    return lambda: catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rules", type=int, default=5)
    args = parser.parse_args()
    print(f"{'policies':>9} {'rules':>7} | {'render ms':>10} {'scrape ms':>10} {'exposition KB':>14}")
    for policies in (200, 2000, 10000):
        catalog = _catalog(policies, args.rules)
        render = _best(functools.partial(_render, catalog))
        registry = CollectorRegistry()
        registry.register(PolicyInfoCollector(_constant(catalog)))
        generate_latest(registry)  # rows rendered and cached
        scrape = _best(functools.partial(generate_latest, registry))
        size = len(generate_latest(registry)) / 1024
        print(f"{policies:>9} {policies * args.rules:>7} | {render:>10.1f} {scrape:>10.1f} {size:>14.0f}")


if __name__ == "__main__":
    main()
