"""HOG extraction time for CIFAR-10's 60,000 images: the parallel extractor against a per-image loop.

    python -m cnnlab_bench.hog_extraction [--loop-images N] [--repeat R]   (CNNLAB_DATA set)

Prints one line per method: the best of R timings (the least disturbed by other work on the machine)
and images per second; no cache is involved.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from cnnlab.baselines.features import HogParams, descriptor_of, extract_hog
from cnnlab.data import readers


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Print and return the best seconds of each method."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", default=os.environ.get("CNNLAB_DATA", "data"), help="data root ($CNNLAB_DATA)"
    )
    parser.add_argument(
        "--loop-images", type=int, default=None, help="time the loop on the first N images only"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timings per method; the best is printed")
    args = parser.parse_args(argv)
    root = Path(args.root)
    images = np.concatenate([readers.read_cifar10(root, train).images.numpy() for train in (True, False)])
    params = HogParams()
    print(f"{len(images)} CIFAR-10 images, HOG {params}, {os.cpu_count()} cores")

    subset = images[: args.loop_images] if args.loop_images else images

    def best_of(extract) -> tuple[float, np.ndarray]:
        timings = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            features = extract()
            timings.append(time.perf_counter() - started)
        return min(timings), features

    seconds, loop = best_of(
        lambda: np.stack([descriptor_of(image, params) for image in subset]).astype(np.float32)
    )
    timings = {"per-image loop": seconds}
    print(
        f"{'per-image loop':24} {len(subset)} images in {seconds:6.1f} s ({len(subset) / seconds:7.0f} img/s)"
    )
    for n_jobs in (1, -1):
        seconds, features = best_of(lambda n_jobs=n_jobs: extract_hog(images, params, n_jobs=n_jobs))
        label = f"extract_hog(n_jobs={n_jobs})"
        timings[label] = seconds
        print(f"{label:24} {len(images)} images in {seconds:6.1f} s ({len(images) / seconds:7.0f} img/s)")
    # the parallel extractor must compute what the loop computes, or its speed means nothing
    np.testing.assert_allclose(features[: len(loop)], loop, rtol=1e-6, atol=1e-7)
    return timings


if __name__ == "__main__":
    main()
