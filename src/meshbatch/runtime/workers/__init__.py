"""`meshbatch run --workers N`: N worker processes on the same ports (SO_REUSEPORT) under one supervisor.

`supervisor.py` starts and restarts the workers, forwards SIGHUP and SIGTERM and serves the one admin view
(`admin.py`, merging with `merge_metrics.py` and `merge_json.py`); `role.py` is the worker's side (its config
adapted: ports shared, a private admin listener, one ingest log per worker); `policy.py` decides when a worker that
died is started again; `count.py` reads `--workers`."""
