"""Operator tools that read a running proxy through its admin API: `meshbatch top` and `meshbatch tune`."""
