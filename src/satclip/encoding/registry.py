from ..registry import Registry

ENCODINGS = Registry("positional encoding")
