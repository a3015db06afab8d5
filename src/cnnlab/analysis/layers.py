"""Which layers of a network to look at: its first conv, its stages, the Grad-CAM layer.

Chosen by structure, not by parameter names, so any model following the convention of the
package (convolutional stages in ``net.stages``) works, and others get a sensible fallback.
"""

from __future__ import annotations

from torch import nn


def has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def first_conv(net: nn.Module) -> nn.Conv2d | None:
    """The first nn.Conv2d in registration order (the one that sees the pixels), or None."""
    return next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)


def stages(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The network's resolution stages: ``net.stages``' children, else every block holding a conv."""
    named = getattr(net, "stages", None)
    if isinstance(named, nn.Module) and len(list(named.children())):
        return [(f"stage {i + 1}", child) for i, child in enumerate(named.children())]
    return _conv_parents(net)


def gradcam_layer(net: nn.Module) -> nn.Module | None:
    """The block whose output Grad-CAM explains: the last conv-bearing block of the last stage.

    That is the deepest feature map that still has a spatial layout, taken before any pooling that
    ends the stage (SmallVGG's max-pool) and after a residual block's addition (ResNets), so the
    choice does not depend on a 1x1 shortcut conv coming last in registration order.
    """
    named = getattr(net, "stages", None)
    if isinstance(named, nn.Sequential) and len(named):
        last_stage = named[-1]
        if not isinstance(last_stage, nn.Sequential):
            return last_stage  # a single block (e.g. one residual block) is the stage
        blocks = [child for child in last_stage.children() if has_conv(child)]
        # a flat stage (bare conv, BN, ReLU, ...) is explained as a whole, after its activation
        return blocks[-1] if blocks and not isinstance(blocks[-1], nn.Conv2d) else last_stage
    parents = _conv_parents(net)
    return parents[-1][1] if parents else None


def _conv_parents(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The direct parent of every conv, in order, each once (fallback for models without ``stages``)."""
    modules = dict(net.named_modules())
    parents: list[tuple[str, nn.Module]] = []
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            parent_name = name.rpartition(".")[0]
            if parent_name not in (n for n, _ in parents):
                parents.append((parent_name or name, modules[parent_name] if parent_name else module))
    return parents
