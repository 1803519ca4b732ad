"""The SatCLIP models: the location encoder (:mod:`.location_encoder`), the full contrastive model
(:mod:`.clip`) with its loss (:mod:`.loss`), inference precision (:mod:`.precision`, :mod:`.fused`), what a
model knows of its training (:mod:`.provenance`) and ranking locations for an image (:mod:`.locate`).

This module itself imports nothing heavy: the typed training config reads :data:`LOGIT_SCALE_INIT` without torch.
"""

import math

#: initial ``logit_scale``: log(1 / temperature 0.07), as CLIP and the original SatCLIP
LOGIT_SCALE_INIT = math.log(1 / 0.07)
