"""satclip: global location embeddings learned from satellite imagery (SatCLIP).

>>> import satclip, torch
>>> encoder = satclip.load("satclip-resnet18-l10")          # or a .ckpt path / model directory
>>> encoder.encode(torch.tensor([[13.40, 52.52]])).shape      # (lon, lat) in degrees
torch.Size([1, 256])
"""

from . import encoding, nn
from .embed import embed  # the function; `from satclip.embed import embed_file` for files
from .load import load
from .load_model import load_model
from .location_encoder import LocationEncoder
from .model import SatCLIP

__version__ = "0.1.0"
__all__ = ["embed", "LocationEncoder", "SatCLIP", "load_model", "encoding", "load", "nn", "__version__"]
