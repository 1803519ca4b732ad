"""Values the model, the loss and the torch-free typed training config share."""

import math

#: initial ``logit_scale``: log(1 / temperature 0.07), as CLIP and the original SatCLIP
LOGIT_SCALE_INIT = math.log(1 / 0.07)
