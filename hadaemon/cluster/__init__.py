"""Cluster mode: several nodes watch the same hosts and agree through etcd (docs/cluster.md).

Beside the core, not above it: the core never imports this package but for the [cluster]
settings (config) and the backend a cluster-mode daemon is started with.
"""
