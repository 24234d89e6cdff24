"""Zero trust for the mesh: workload identities (a CA, SPIFFE IDs), mTLS on listeners and clusters, authorization
policies, JWT validation, connection and identity rates. See docs/security.md."""
