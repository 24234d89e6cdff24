"""What the tests, the benchmarks and the chaos suite share: the `meshbatch run` process and its config writers,
upstream servers and fleets of upstream processes, raw HTTP clients, a test PKI, the stores' readers, a fake
Kubernetes API and the manifests' validation, the facts of the machine a run was measured on.

A top-level package of the repository checkout, never part of the installed `meshbatch`: the tests find it
through pytest's `pythonpath`, `meshbatch bench` and `meshbatch chaos` put the checkout on `sys.path`.
"""
