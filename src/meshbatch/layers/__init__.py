"""The layers of a route's stack: each a `Service` around an inner one, or a `Check` (service/stack.py).

One concern per module: `authz` (JWT and policies, as checks), `ratelimit` (token buckets: a check for
requests, a layer for items), `timeout` (the route's deadline), `fault`, `concurrency` (adaptive, gradient on
min RTT), `mirror`, `split` (weighted clusters), `retry` (the backoff is core/backoff.py), `call` (the
innermost service: one upstream attempt), `check` (a check below another layer). The route stacks put them in order
(runtime/stacks/); `shared.Shared` carries their state across reloads. See docs/traffic.md.
"""

from meshbatch.layers.shared import Shared

__all__ = ["Shared"]
