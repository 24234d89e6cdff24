"""Microbatching: many single requests become few upstream batch calls, each caller gets its own answer."""
