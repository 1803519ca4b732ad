"""Image → location retrieval with the shipped `bluemarble-l10` model on its own corpus.

    python benchmarks/locate_bluemarble.py [--patches 200] [--grid 10000]

For random corpus patches (the default 100k Blue Marble corpus; its 10 % validation split is among them),
scores every point of a Fibonacci grid and the true location, and prints how much of the grid scores above
the truth: the true location "ranks in the top 1 %" when that fraction is ≤ 0.01.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _args import positive_int
from hardware import print_hardware

import satclip
from satclip.data.bluemarble import BlueMarble, BlueMarbleParams, default_corpus_dir
from satclip.models.locate import fibonacci_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=positive_int, default=200)
    parser.add_argument("--grid", type=positive_int, default=10_000)
    args = parser.parse_args()
    print_hardware()
    model = satclip.load_model("bluemarble-l10").eval()
    dataset = BlueMarble(default_corpus_dir(BlueMarbleParams()))
    picks = np.random.default_rng(0).choice(len(dataset), args.patches, replace=False)
    images = torch.stack([dataset[int(i)]["image"] for i in picks])
    truth = torch.stack([dataset[int(i)]["point"] for i in picks])
    grid = torch.as_tensor(fibonacci_grid(args.grid))
    normalize = torch.nn.functional.normalize
    with torch.no_grad():
        image = normalize(model.encode_image(images).float(), dim=1)
        on_grid = normalize(model.encode_location(grid.double()).float(), dim=1)
        at_truth = normalize(model.encode_location(truth.double()).float(), dim=1)
    above = ((image @ on_grid.T) > (image * at_truth).sum(1, keepdim=True)).float().mean(1)
    top = 100 * (above <= 0.01).float().mean().item()
    print(f"{args.patches} patches, grid of {args.grid}: median share of the grid above the truth "
          f"{above.median().item():.4f}; true location in the top 1 % for {top:.0f} %")  # fmt: skip


if __name__ == "__main__":
    main()
