"""Layers of the OFA MobileNetV3 family: plain static modules, and the elastic block that slices them.

Static modules (:class:`ConvBNAct`, :class:`SqueezeExcite`, :class:`MBConv`) make up a materialized
subnet. :class:`ElasticMBConv` stores the full weights of one supernet block under the *same* key names
as a static :class:`MBConv`, so a subnet's weights are prefix slices of the supernet's, except the
depthwise kernel, which shrinks through learned transformation matrices (7 -> 5 -> 3).

Example:
    >>> import torch
    >>> block = ElasticMBConv(16, 24, (3, 5, 7), (3, 4, 6), stride=2, act="relu", use_se=True).eval()
    >>> block(torch.randn(1, 16, 8, 8), kernel=5, mid=48).shape
    torch.Size([1, 24, 4, 4])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConvBNAct",
    "ElasticMBConv",
    "MBConv",
    "SqueezeExcite",
    "make_act",
    "shrink_kernel",
    "transform_name",
]


def make_act(name: str | None) -> nn.Module:
    """``"relu"`` -> ReLU, ``"h_swish"`` -> Hardswish, ``None`` -> Identity.

    Example:
        >>> make_act("h_swish")
        Hardswish()
    """
    if name is None:
        return nn.Identity()
    if name == "relu":
        return nn.ReLU()
    if name == "h_swish":
        return nn.Hardswish()
    raise ValueError(f"activation {name!r} is not one of ['relu', 'h_swish']")


def _act_fn(name: str | None, x: torch.Tensor) -> torch.Tensor:
    if name is None:
        return x
    return F.relu(x) if name == "relu" else F.hardswish(x)


class ConvBNAct(nn.Module):
    """Conv2d (no bias, 'same' padding) -> optional BatchNorm2d -> optional activation.

    Example:
        >>> import torch
        >>> ConvBNAct(3, 8, 3, stride=2, act="h_swish")(torch.randn(1, 3, 32, 32)).shape
        torch.Size([1, 8, 16, 16])
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int = 1,
        act: str | None = None,
        groups: int = 1,
        bn: bool = True,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=bn_eps, momentum=bn_momentum) if bn else None
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)


class SqueezeExcite(nn.Module):
    """Global pool -> 1x1 reduce (bias) -> ReLU -> 1x1 expand (bias) -> hard sigmoid -> scale the input.

    Example:
        >>> import torch
        >>> SqueezeExcite(32, 8)(torch.randn(2, 32, 4, 4)).shape
        torch.Size([2, 32, 4, 4])
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=True)
        self.expand = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = F.hardsigmoid(self.expand(F.relu(self.reduce(s))))
        return x * s


class MBConv(nn.Module):
    """Static inverted bottleneck: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project (+ residual).

    ``mid == in_ch`` with ``expand=False`` gives the expand-ratio-1 block (no 1x1 expand conv).

    Example:
        >>> import torch
        >>> MBConv(16, 64, 16, kernel=5, stride=1, act="relu", se_hidden=16)(torch.randn(1, 16, 8, 8)).shape
        torch.Size([1, 16, 8, 8])
    """

    def __init__(
        self,
        in_ch: int,
        mid: int,
        out_ch: int,
        kernel: int,
        stride: int,
        act: str,
        se_hidden: int | None = None,
        expand: bool = True,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        bn = {"bn_momentum": bn_momentum, "bn_eps": bn_eps}
        self.expand = ConvBNAct(in_ch, mid, 1, act=act, **bn) if expand else None
        self.dw = ConvBNAct(mid, mid, kernel, stride, act=act, groups=mid, **bn)
        self.se = SqueezeExcite(mid, se_hidden) if se_hidden else None
        self.project = ConvBNAct(mid, out_ch, 1, act=None, **bn)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


def transform_name(big: int, small: int) -> str:
    """Key of the matrix that shrinks a ``big`` kernel to ``small`` (e.g. ``"7to5"``)."""
    return f"{big}to{small}"


def shrink_kernel(
    weight: torch.Tensor, kernel: int, ks_choices: tuple[int, ...], matrices: nn.ParameterDict
) -> torch.Tensor:
    """Depthwise kernel of size ``kernel`` from the full one, as in once-for-all's kernel transformation.

    Going down the ascending ``ks_choices`` one step at a time, take the centre ``small x small`` patch of
    the current kernel and map its flattened taps through the learned ``big -> small`` matrix
    (``y = x @ M.T``). The matrices start as identities, i.e. as plain centre cropping.

    Example:
        >>> import torch
        >>> m = nn.ParameterDict({"7to5": nn.Parameter(torch.eye(25)), "5to3": nn.Parameter(torch.eye(9))})
        >>> w = torch.randn(4, 1, 7, 7)
        >>> torch.equal(shrink_kernel(w, 3, (3, 5, 7), m), w[:, :, 2:5, 2:5])
        True
    """
    current = weight.shape[-1]
    if kernel == current:
        return weight
    channels = weight.shape[0]
    for big, small in zip(reversed(ks_choices), reversed(ks_choices[:-1])):
        if big > current:
            continue
        if big <= kernel:
            break
        start = (big - small) // 2
        patch = weight[:, :, start : start + small, start : start + small].reshape(channels, small * small)
        weight = F.linear(patch, matrices[transform_name(big, small)]).reshape(channels, 1, small, small)
        current = small
    assert weight.shape[-1] == kernel, (weight.shape, kernel)
    return weight


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d, training: bool) -> torch.Tensor:
    c = x.shape[1]
    return F.batch_norm(
        x,
        bn.running_mean[:c],
        bn.running_var[:c],
        bn.weight[:c],
        bn.bias[:c],
        training,
        bn.momentum if bn.momentum is not None else 0.0,
        bn.eps,
    )


class ElasticMBConv(nn.Module):
    """One supernet block: full-size weights, run at any (kernel, middle width) by slicing.

    The active configuration is an argument of :meth:`forward`, never stored state. Parameter names
    equal a static :class:`MBConv`'s, plus ``kernel_transforms.<big>to<small>``.

    Example:
        >>> import torch
        >>> b = ElasticMBConv(24, 24, (3, 5, 7), (3, 4, 6), stride=1, act="h_swish", use_se=False).eval()
        >>> b(torch.randn(1, 24, 6, 6), kernel=3, mid=72).shape
        torch.Size([1, 24, 6, 6])
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        ks_choices: tuple[int, ...],
        e_choices: tuple[int, ...],
        stride: int,
        act: str,
        use_se: bool,
        divisor: int = 8,
        se_reduction: int = 4,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        from .skeleton import make_divisible

        self.ks_choices = tuple(ks_choices)
        self.stride, self.act_name, self.in_ch, self.out_ch = stride, act, in_ch, out_ch
        self.divisor, self.se_reduction = divisor, se_reduction
        max_mid = make_divisible(round(in_ch * max(e_choices)), divisor)
        bn = {"bn_momentum": bn_momentum, "bn_eps": bn_eps}
        self.expand = ConvBNAct(in_ch, max_mid, 1, act=act, **bn)
        self.dw = ConvBNAct(max_mid, max_mid, max(ks_choices), stride, act=act, groups=max_mid, **bn)
        self.kernel_transforms = nn.ParameterDict(
            {
                transform_name(big, small): nn.Parameter(torch.eye(small * small))
                for small, big in zip(self.ks_choices, self.ks_choices[1:])
            }
        )
        self.se = SqueezeExcite(max_mid, self.se_hidden(max_mid)) if use_se else None
        self.project = ConvBNAct(max_mid, out_ch, 1, act=None, **bn)
        self.residual = stride == 1 and in_ch == out_ch

    def se_hidden(self, mid: int) -> int:
        from .skeleton import make_divisible

        return make_divisible(mid // self.se_reduction, self.divisor)

    def dw_kernel(self, kernel: int, mid: int) -> torch.Tensor:
        """The active depthwise kernel, shape ``(mid, 1, kernel, kernel)``."""
        return shrink_kernel(self.dw.conv.weight[:mid], kernel, self.ks_choices, self.kernel_transforms)

    def forward(self, x: torch.Tensor, kernel: int, mid: int) -> torch.Tensor:
        training = self.training
        y = F.conv2d(x, self.expand.conv.weight[:mid])
        y = _act_fn(self.act_name, _bn(y, self.expand.bn, training))
        y = F.conv2d(y, self.dw_kernel(kernel, mid), None, self.stride, kernel // 2, 1, mid)
        y = _act_fn(self.act_name, _bn(y, self.dw.bn, training))
        if self.se is not None:
            hidden = self.se_hidden(mid)
            s = y.mean((2, 3), keepdim=True)
            s = F.relu(F.conv2d(s, self.se.reduce.weight[:hidden, :mid], self.se.reduce.bias[:hidden]))
            s = F.hardsigmoid(F.conv2d(s, self.se.expand.weight[:mid, :hidden], self.se.expand.bias[:mid]))
            y = y * s
        y = _bn(F.conv2d(y, self.project.conv.weight[:, :mid]), self.project.bn, training)
        return x + y if self.residual else y

    @torch.no_grad()
    def sort_channels_(self) -> None:
        """Reorder middle channels (and SE hidden units) by importance, most important first.

        Importance is the L1 norm of the projecting weights, as in once-for-all before elastic expand:
        smaller expand ratios then keep the channels that matter. The full block computes the same.
        """
        order = self.project.conv.weight.abs().sum((0, 2, 3)).argsort(descending=True)
        for layer in (self.expand, self.dw):
            layer.conv.weight.copy_(layer.conv.weight[order])
            for name in ("weight", "bias", "running_mean", "running_var"):
                tensor = getattr(layer.bn, name)
                tensor.copy_(tensor[order])
        self.project.conv.weight.copy_(self.project.conv.weight[:, order])
        if self.se is not None:
            self.se.reduce.weight.copy_(self.se.reduce.weight[:, order])
            self.se.expand.weight.copy_(self.se.expand.weight[order])
            self.se.expand.bias.copy_(self.se.expand.bias[order])
            hidden = self.se.expand.weight.abs().sum((0, 2, 3)).argsort(descending=True)
            self.se.reduce.weight.copy_(self.se.reduce.weight[hidden])
            self.se.reduce.bias.copy_(self.se.reduce.bias[hidden])
            self.se.expand.weight.copy_(self.se.expand.weight[:, hidden])

    def active_state(self, kernel: int, mid: int) -> dict[str, torch.Tensor]:
        """State dict (detached copies) of the static :class:`MBConv` this block runs as."""
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for name, tensor in (*self.named_parameters(), *self.named_buffers()):
                if name.startswith("kernel_transforms."):
                    continue
                if name == "dw.conv.weight":
                    out[name] = self.dw_kernel(kernel, mid).detach().clone()
                    continue
                out[name] = _prefix(tensor.detach(), name, mid, self.se_hidden(mid)).clone()
        return out


def _prefix(t: torch.Tensor, name: str, mid: int, hidden: int) -> torch.Tensor:
    if t.dim() == 0:  # num_batches_tracked
        return t
    part = name.split(".")[0]
    if part in ("expand", "dw"):
        return t[:mid]
    if part == "se":
        if name.startswith("se.reduce."):
            return t[:hidden, :mid] if t.dim() > 1 else t[:hidden]
        return t[:mid, :hidden] if t.dim() > 1 else t[:mid]
    assert part == "project", name
    return t[:, :mid] if name == "project.conv.weight" else t
