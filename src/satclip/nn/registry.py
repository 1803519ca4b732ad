from ..registry import Registry

NETWORKS = Registry("network")
