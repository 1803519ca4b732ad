"""ReLU networks: ``linear``, ``mlp`` and ``fcnet`` (residual), with the original SatCLIP key names."""

from __future__ import annotations

from torch import nn


class MLP(nn.Module):
    """Linear → ReLU, ``num_layers`` hidden Linear → ReLU blocks, Linear.

    Unlike the original (whose hidden layers were one shared ``nn.Linear`` repeated by list
    multiplication), each hidden layer has its own weights. Keys: ``features.{i}.weight|bias``.
    """

    def __init__(self, input_dim: int, dim_hidden: int, num_layers: int, out_dims: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(input_dim, dim_hidden), nn.ReLU()]
        for _ in range(num_layers):
            layers += [nn.Linear(dim_hidden, dim_hidden), nn.ReLU()]
        layers.append(nn.Linear(dim_hidden, out_dims))
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return self.features(x)


class ResLayer(nn.Module):
    """``x + relu(w2(dropout(relu(w1 x))))`` (Mac Aodha et al. 2019)."""

    def __init__(self, size: int):
        super().__init__()
        self.w1 = nn.Linear(size, size)
        self.w2 = nn.Linear(size, size)
        self.dropout1 = nn.Dropout()

    def forward(self, x):
        y = self.dropout1(self.w1(x).relu())
        return x + self.w2(y).relu()


class FCNet(nn.Module):
    """Linear → ReLU → four residual layers → bias-free linear head. Keys as the original's."""

    def __init__(self, num_inputs: int, num_classes: int, dim_hidden: int):
        super().__init__()
        self.feats = nn.Sequential(
            nn.Linear(num_inputs, dim_hidden), nn.ReLU(), *(ResLayer(dim_hidden) for _ in range(4))
        )
        self.class_emb = nn.Linear(dim_hidden, num_classes, bias=False)

    def forward(self, x):
        return self.class_emb(self.feats(x))


from .registry import NETWORKS, SIZES, BadInputError, matrix, numbered  # noqa: E402


@NETWORKS.register("linear")
def _linear(input_dim: int, num_classes: int = 256) -> nn.Linear:
    return nn.Linear(input_dim, num_classes)


@NETWORKS.register("mlp")
def _mlp(input_dim: int, num_classes: int = 256, dim_hidden: int = 256, num_layers: int = 2) -> MLP:
    return MLP(input_dim, dim_hidden, num_layers, num_classes)


@NETWORKS.register("fcnet")
def _fcnet(input_dim: int, num_classes: int = 256, dim_hidden: int = 256) -> FCNet:
    return FCNet(input_dim, num_classes, dim_hidden)


def _shape_of(shapes, key: str) -> tuple[int, int, str]:
    rows, cols = matrix(shapes, key)
    return rows, cols, f"{key} has shape ({rows}, {cols})"


@SIZES.register("linear")
def _linear_sizes(shapes, prefix: str = "") -> dict:
    out, width, evidence = _shape_of(shapes, f"{prefix}weight")
    return {"num_classes": (out, evidence), "input_dim": (width, evidence)}


@SIZES.register("mlp")
def _mlp_sizes(shapes, prefix: str = "") -> dict:
    linear = numbered(shapes, f"{prefix}features.")
    if len(linear) < 2 or linear != list(range(0, 2 * len(linear), 2)):
        raise BadInputError(
            f"the weights' {prefix}features.* linear layers are numbered {linear}, not 0, 2, 4, … (at least two)"
        )
    hidden, width, first = _shape_of(shapes, f"{prefix}features.0.weight")
    out, _, last = _shape_of(shapes, f"{prefix}features.{linear[-1]}.weight")
    count = f"{len(linear) - 2} hidden layers between {prefix}features.0 and {prefix}features.{linear[-1]}"
    return {
        "input_dim": (width, first),
        "dim_hidden": (hidden, first),
        "num_classes": (out, last),
        "num_layers": (len(linear) - 2, count),
    }


@SIZES.register("fcnet")
def _fcnet_sizes(shapes, prefix: str = "") -> dict:
    hidden, width, first = _shape_of(shapes, f"{prefix}feats.0.weight")
    out, _, last = _shape_of(shapes, f"{prefix}class_emb.weight")
    return {"input_dim": (width, first), "dim_hidden": (hidden, first), "num_classes": (out, last)}
