from ..registry import Registry

IMAGE_ENCODERS = Registry("image encoder")
