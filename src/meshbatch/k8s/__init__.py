"""Kubernetes manifests from a meshbatch config: `meshbatch k8s render`.

One concern per file: `options` (what the user chooses), `ports` (what the config listens on, and what cannot
work in a pod), `configmap`, `workload` (Deployment, PodDisruptionBudget), `services`, `rbac` (the service
account, and read access to EndpointSlices for `kubernetes` discovery), `render` (all of them, in apply order),
`output` (YAML documents), `cli` (the subcommand).

The public API is `meshbatch.k8s.render` (`render`, `render_text`, `RenderError`) and
`meshbatch.k8s.options.RenderOptions`; this package imports nothing itself, so that the command line's
parser stays cheap to build.
"""
