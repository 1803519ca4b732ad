"""Reading and writing models: the original Lightning ``.ckpt`` and the native safetensors format."""
