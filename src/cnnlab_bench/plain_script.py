"""The hand-written PyTorch script that `python -m train` is timed against (`cnnlab_bench.whole_run`).

One epoch of SmallCNN as a user would write it without a framework: a DataLoader with worker
processes and per-image torchvision augmentation, SGD with Nesterov momentum and weight decay, cosine
annealing per batch, a validation pass, then the test set. It borrows only the network class and the
file readers, so both sides train the same model on the same bytes.

    python -m cnnlab_bench.plain_script --data mnist [--epochs 1] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from cnnlab.data import readers
from cnnlab.models.smallcnn import SmallCNN

# The augmentation strength of conf/data/<name>.yaml, and the normalisation constants.
RECIPES = {
    "mnist": (v2.RandomAffine(degrees=10, translate=(0.1, 0.1)), (0.1307,), (0.3081,)),
    "fashion_mnist": (
        v2.Compose([v2.RandomCrop(28, padding=2), v2.RandomHorizontalFlip()]),
        (0.2860,),
        (0.3530,),
    ),
    "cifar10": (
        v2.Compose([v2.RandomCrop(32, padding=4, padding_mode="reflect"), v2.RandomHorizontalFlip()]),
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
    ),
}


class Augmented(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: v2.Transform | None) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        return (self.transform(image) if self.transform else image), self.labels[index]


def accuracy(net: torch.nn.Module, loader: DataLoader, mean: torch.Tensor, std: torch.Tensor) -> float:
    net.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            logits = net((images.float() / 255 - mean) / std)
            correct += int((logits.argmax(1) == labels).sum())
            total += len(labels)
    net.train()
    return correct / total


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        prog="python -m cnnlab_bench.plain_script", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data", choices=sorted(RECIPES), default="mnist")
    parser.add_argument("--root", default=os.environ.get("CNNLAB_DATA", "data"))
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--val-size", type=int, default=5000, help="training images held out, as data.val_size"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    torch.manual_seed(args.seed)

    train_split = readers.source(args.data).read(Path(args.root), True)
    test_split = readers.source(args.data).read(Path(args.root), False)
    order = torch.randperm(len(train_split.labels), generator=torch.Generator().manual_seed(args.seed))
    val_idx, train_idx = order[: args.val_size], order[args.val_size :]
    transform, mean, std = RECIPES[args.data]
    mean_t, std_t = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)

    workers = max((os.cpu_count() or 1) - 1, 0)  # one core trains, the others augment
    train_loader = DataLoader(
        Augmented(train_split.images[train_idx], train_split.labels[train_idx], transform),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    val_loader = DataLoader(
        Augmented(train_split.images[val_idx], train_split.labels[val_idx], None), batch_size=512
    )
    test_loader = DataLoader(Augmented(test_split.images, test_split.labels, None), batch_size=512)

    net = SmallCNN(in_channels=len(mean), num_classes=10)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * len(train_loader))

    first_step = None
    for _ in range(args.epochs):
        for images, labels in train_loader:
            first_step = first_step or time.perf_counter()
            loss = F.cross_entropy(net((images.float() / 255 - mean_t) / std_t), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        val_acc = accuracy(net, val_loader, mean_t, std_t)
    result = {
        "val_acc": val_acc,
        "test_acc": accuracy(net, test_loader, mean_t, std_t),
        "train_time_s": time.perf_counter() - (first_step or started),
        "wall_in_process_s": time.perf_counter() - started,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
