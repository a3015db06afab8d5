"""Grad-CAM class evidence maps (captum's LayerGradCam) and stage activations."""

from __future__ import annotations

import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn


def gradcam_maps(
    net: nn.Module, layer: nn.Module, inputs: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Grad-CAM of ``targets`` (one class per image) at ``layer``, upsampled to the input: (N, H, W).

    ``inputs`` are normalised images on the network's device. ReLU'd as in the original Grad-CAM:
    only evidence for the class is kept.
    """
    net.eval()
    with torch.enable_grad():
        attributions = LayerGradCam(net, layer).attribute(
            inputs, target=targets.tolist(), relu_attributions=True
        )
    upsampled = LayerAttribution.interpolate(attributions, tuple(inputs.shape[-2:]), "bilinear")
    return upsampled.detach()[:, 0].float().cpu()


@torch.inference_mode()
def stage_activations(net: nn.Module, modules: list[nn.Module], inputs: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of ``modules`` for ``inputs`` (CPU tensors), captured with forward hooks."""
    captured: list[torch.Tensor] = []
    handles = [
        m.register_forward_hook(lambda _m, _i, out: captured.append(out.detach().cpu().clone()))
        for m in modules
    ]
    try:
        net.eval()
        net(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return captured
