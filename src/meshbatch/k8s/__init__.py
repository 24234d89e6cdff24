"""Kubernetes manifests from a meshbatch config: `meshbatch k8s render`.

One concern per file: `options` (what the user chooses), `ports` (what the config listens on, and what cannot
work in a pod), `pack` (the config as the pod reads it: the files it reads, the secrets it holds, the state it
writes), `configmap` (the ConfigMap and the Secret), `workload` (Deployment or StatefulSet, PodDisruptionBudget),
`services`, `rbac` (the service account, and read access to EndpointSlices for `kubernetes` discovery),
`scaling` (the HorizontalPodAutoscaler), `monitoring` (ServiceMonitor or PodMonitor), `mesh` (the Gateway API
HTTPRoute and the Istio VirtualService that send a Service's callers through the proxy), `refusals` (what
cannot work, with the reason), `render` (all of them, in apply order), `output` (YAML documents), `cli` (the
subcommand).

The public API is `meshbatch.k8s.render` (`render`, `render_text`, `RenderError`) and
`meshbatch.k8s.options.RenderOptions`; this package imports nothing heavy itself, so that the command line's
parser stays cheap to build.
"""
