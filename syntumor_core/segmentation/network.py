"""How fast mode executes a network: a faster copy of it, compiled when a run is large.

Parity mode runs the caller's model unchanged. Fast mode runs :attr:`FastNetwork.model`, built
on its first use: the model itself, or a copy where fast mode changes something —
channels-last memory for the U-Net on CUDA, and Swin-UNETR's window attention through
PyTorch's fused ``scaled_dot_product_attention`` (:func:`with_fused_attention`). On top of it,
``torch.compile`` (inductor, frozen weights) is built once, when a run first needs at least
its plan's ``compile_from`` forward passes, and kept; if compiled execution fails (e.g. no C++
compiler) a warning is logged and the network runs eagerly from then on.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import torch
from monai.networks.nets.swin_unetr import WindowAttention
from torch import nn

from syntumor_core.segmentation.options import RunPlan

logger = logging.getLogger(__name__)


def with_fused_attention(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose Swin window attention uses PyTorch's fused kernel.

    MONAI's ``WindowAttention(use_flash_attention=True)`` computes the same attention with
    ``scaled_dot_product_attention`` (relative-position bias and shift mask as its additive
    mask) instead of materialising and soft-maxing the scores itself: about 1.45× faster a
    Swin-UNETR tiny window on the CPU, logits equal to ~1e-6. ``model`` itself is left alone
    (parity mode runs it unchanged); a model without window attention is returned as it is.
    """
    if not any(isinstance(module, WindowAttention) for module in model.modules()):
        return model
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, WindowAttention):
            module.use_flash_attention = True
    return model


class FastNetwork:
    """Fast mode's execution of one network, shared by every run of a predictor.

    Args:
        model: the caller's network, on ``device`` and in eval mode (never changed).
        arch: its architecture.
        device: where it runs.
    """

    def __init__(self, model: nn.Module, arch: str, device: torch.device) -> None:
        self.original, self.arch, self.device = model, arch, device
        self.compile_failed = False  # set when compiled execution failed: eager from then on
        self._model: nn.Module | None = None
        self._compiled: Callable | None = None

    @property
    def model(self) -> nn.Module:
        """The network fast mode runs: the original, or a copy with fast mode's changes."""
        if self._model is None:
            model = self.original
            if self.arch == "unet" and self.device.type == "cuda":  # a plan's channels_last
                model = copy.deepcopy(model).to(memory_format=torch.channels_last_3d)
            self._model = with_fused_attention(model)
        return self._model

    @property
    def compiled(self) -> bool:
        """Whether the compiled network has been built (runs allowed to compile reuse it)."""
        return self._compiled is not None

    def compiled_for(self, passes: int, plan: RunPlan) -> Callable | None:
        """The compiled network for a run of ``passes`` forward passes, or None (eager)."""
        if plan.compile_from is None or self.compile_failed:
            return None
        if self._compiled is None:
            if passes < plan.compile_from:
                return None
            # freezing folds the weights into the graph as constants (inference only);
            # dynamic=False: one shape, the full window batch (see forward)
            self._compiled = torch.compile(self.model, dynamic=False, options={"freezing": True})
        return self._compiled

    def forward(self, windows: torch.Tensor, plan: RunPlan, compiled: bool) -> torch.Tensor:
        """Float32 logits of a batch of windows: through the compiled network when
        ``compiled`` and one was built (see :meth:`compiled_for`), else eagerly."""
        if compiled and self._compiled is not None:
            count = windows.shape[0]
            missing = plan.sw_batch_size - count
            if missing > 0:  # a short last batch would compile a second graph: pad it
                filler = windows[-1:].expand(missing, *windows.shape[1:])
                windows = torch.cat([windows, filler])
            try:
                with torch.autocast(self.device.type, torch.float16, enabled=plan.autocast):
                    return self._compiled(windows).float()[:count]
            except Exception as error:  # noqa: BLE001 - compiling is an optimisation; eager works
                logger.warning("compiled execution failed, running the network eagerly: %s", error)
                self.compile_failed, self._compiled = True, None
                windows = windows[:count]
        if plan.channels_last:
            windows = windows.contiguous(memory_format=torch.channels_last_3d)
        if plan.autocast:
            with torch.autocast(device_type=self.device.type, dtype=torch.float16):
                return self.model(windows).float()
        return self.model(windows).float()

    def for_plan(self, plan: RunPlan) -> PlannedNetwork:
        """This network as one run of ``plan`` uses it (a
        :class:`~syntumor_core.segmentation.windows.WindowNetwork`)."""
        return PlannedNetwork(self, plan)


class PlannedNetwork:
    """A :class:`FastNetwork` for one run: eager or compiled, as the run's size and options
    ask (what :func:`~syntumor_core.segmentation.windows.fast_logits` runs windows through)."""

    def __init__(self, network: FastNetwork, plan: RunPlan) -> None:
        self.network, self.plan = network, plan

    def prepare(self, passes: int) -> bool:
        return self.network.compiled_for(passes, self.plan) is not None

    def __call__(self, windows: torch.Tensor, compiled: bool) -> torch.Tensor:
        return self.network.forward(windows, self.plan, compiled)
