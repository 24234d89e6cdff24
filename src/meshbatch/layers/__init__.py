"""Resilience and traffic shaping: route layers (Handler -> Handler) and the guarded upstream stage.

One concern per module: `timeout` (the route's deadline), `retry` (+ `backoff`, `budget`), `breaker` (an
endpoint's state machine) and `guard` (a cluster's thresholds), `ratelimit` (token buckets), `concurrency`
(adaptive, gradient on min RTT), `fault`, `mirror`, `split` (weighted clusters and subsets), `call` and
`attempt` (the innermost stage). `stack.Layers` composes them once per snapshot; `shared.Shared` carries
their state across reloads. See docs/traffic.md.
"""

from meshbatch.layers.shared import Shared
from meshbatch.layers.stack import Layers, route_clusters

__all__ = ["Layers", "Shared", "route_clusters"]
