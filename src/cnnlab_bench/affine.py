"""Time one batch of random affines, torchvision-per-image vs whole-batch implementations.

    python -m cnnlab_bench.affine [--batch 128] [--shape 1 28 28] [--threads 1]

Compares, on the same uint8 batch and MNIST's RandomAffine(degrees=10, translate=(0.1, 0.1)):
torchvision's v2.RandomAffine image by image (what a DataLoader worker does), cnnlab's
``random_affine`` (torchvision's grid, built with one ``bmm``, then ``F.grid_sample``), the same with
PyTorch's ``F.affine_grid``, and kornia (``kornia.augmentation.RandomAffine``, and
``kornia.geometry.warp_affine`` on the same matrices) when it is installed. Prints ms per batch,
the best of ``--repeats`` timings (at most 5 for the slow per-image loop).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from cnnlab.data.batched_transforms import draw_affine_params, inverse_affine_matrices, random_affine


def best_ms(function: Callable[[], object], repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Print and return the ms per batch of each implementation."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--shape", type=int, nargs=3, default=[1, 28, 28], metavar=("C", "H", "W"))
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    channels, height, width = args.shape
    transform = v2.RandomAffine(degrees=10, translate=(0.1, 0.1))
    images = torch.randint(0, 256, (args.batch, channels, height, width), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)

    def torch_affine_grid() -> torch.Tensor:
        params = draw_affine_params(transform, len(images), height, width, generator, images.device)
        inverse = inverse_affine_matrices(**params).float()
        # pixel maps -> the normalised coordinates F.affine_grid expects (align_corners=False)
        theta = inverse.clone()
        theta[:, 0, 1] *= height / width
        theta[:, 1, 0] *= width / height
        theta[:, 0, 2] *= 2 / width
        theta[:, 1, 2] *= 2 / height
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        out = F.grid_sample(images.float(), grid, mode="nearest", align_corners=False)
        return out.round_().to(torch.uint8)

    candidates: dict[str, Callable[[], object]] = {
        "torchvision v2.RandomAffine, image by image": lambda: torch.stack([transform(i) for i in images]),
        "cnnlab random_affine (torchvision grid + F.grid_sample)": lambda: random_affine(
            images, transform, generator
        ),
        "F.affine_grid + F.grid_sample": torch_affine_grid,
    }
    try:
        import kornia
    except ImportError:
        print("kornia is not installed (pip install kornia): its rows are left out")
    else:
        augment = kornia.augmentation.RandomAffine(
            degrees=10, translate=(0.1, 0.1), resample="nearest", p=1.0
        )

        def kornia_warp() -> torch.Tensor:
            params = draw_affine_params(transform, len(images), height, width, generator, images.device)
            inverse = inverse_affine_matrices(**params).float()
            bottom = torch.tensor([0.0, 0.0, 1.0]).expand(len(images), 1, 3)
            forward = torch.linalg.inv(torch.cat([inverse, bottom], dim=1))[:, :2]
            out = kornia.geometry.transform.warp_affine(
                images.float(), forward, (height, width), mode="nearest", align_corners=False
            )
            return out.round_().to(torch.uint8)

        candidates["kornia.augmentation.RandomAffine"] = lambda: augment(images.float()).round_().byte()
        candidates["kornia.geometry.warp_affine (same matrices)"] = kornia_warp
        print(f"kornia {kornia.__version__}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {tuple(images.shape)} uint8")
    milliseconds = {}
    for index, (name, function) in enumerate(candidates.items()):
        repeats = min(args.repeats, 5) if index == 0 else args.repeats  # the per-image loop is slow
        milliseconds[name] = best_ms(function, repeats)
        print(f"{milliseconds[name]:9.3f} ms  {name}")
    return milliseconds


if __name__ == "__main__":
    main()
