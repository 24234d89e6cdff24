"""Route matching: pure, compiled once per config snapshot."""

from meshbatch.routing.match import RouteMatcher, RouteTable

__all__ = ["RouteMatcher", "RouteTable"]
