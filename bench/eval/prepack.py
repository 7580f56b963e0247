"""Linear weights packed once per decode batch, for the CPU decode step (MKL ``sgemm`` with a pre-packed B).

In a decode step every linear layer multiplies a few rows (one new token per sequence) by its weight. MKL's
``sgemm`` packs the weight into its blocked layout inside every call; at a few dozen rows that packing costs about
as much as the product itself. ``cblas_sgemm_pack`` does it once, and ``cblas_sgemm_compute`` then runs on the
packed copy; torch exposes the pair as ``torch.ops.mkl._mkl_reorder_linear_weight(weight, rows)`` and
``torch.ops.mkl._mkl_linear(x, packed, weight, bias, rows)`` (the ops inductor's CPU weight freezing uses).
Measured on the 2-core CPU, 32 rows: 512 → 1376 0.32 → 0.18 ms, 512 → 32064 (the ``mid`` head) 7.4 → 4.2 ms; on
the ``mid`` perf captions the decode goes from about 2.4 to 1.95 s.

:class:`PackedLinears` packs the weights of a list of ``torch.nn.Linear`` layers (the language model's and its
output embedding: :meth:`bench.eval.kvcache.LanguageModel.packed_decode`) for one row count, and while installed
routes those layers' forwards through the packed copies. A call with another row count (a prefill, or the batch
after rows left it) takes ``torch.nn.functional.linear``; :meth:`PackedLinears.set_rows` re-packs when the batch
shrinks. LoRA layers (peft) are not ``nn.Linear``: their base layer is, and is packed; the adapters run as before.

When it is used (:func:`packable`): CPU, float32, gradients off, torch built with MKL, between
:data:`MIN_PACKED_ROWS` and :data:`MAX_PACKED_ROWS` rows, and packed copies within :data:`PACK_BUDGET_BYTES`
(MKL's packed layout takes 1.4–3.7 times the weight's bytes, by shape; a 7B language model is left alone).

Exactness: a packed product sums each dot product over the input features as the unpacked one does, in MKL's own
blocking; on the tested shapes the outputs are equal or differ in the last bits (at most 2e-6 on outputs of order
1). Such bits could flip an exact tie between two tokens' logits, as any change of batch size already can; the
engine's agreement with batch-1 ``generate`` is checked where it was before (tests, ``bench perf eval``) and the
checked-in leaderboard is reproduced bit for bit (``fingerprint.ENGINE_VERSION`` 3 keys predictions made so).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

PACK_BUDGET_BYTES = 1 << 30  # packed copies of one model's linear weights
PACKED_SIZE_FACTOR = 4  # packed bytes per weight byte, upper bound used before packing (measured ~3.7 at 32 rows)
MIN_PACKED_ROWS = 2  # at one row the packed product is slower (512 → 1376: 0.042 vs 0.036 ms)
MAX_PACKED_ROWS = 256  # the gain shrinks with the rows (512 → 1376: 1.37× at 64, 1.22× at 256, 1.08× at 512)


def _mkl_ops_available() -> bool:
    mkl = getattr(torch.ops, "mkl", None)
    try:
        return bool(torch.backends.mkl.is_available() and mkl is not None
                    and hasattr(mkl, "_mkl_linear") and hasattr(mkl, "_mkl_reorder_linear_weight"))
    except (AttributeError, RuntimeError):
        return False


def is_plain_linear(module: torch.nn.Module) -> bool:
    """An ``nn.Linear`` itself (not a subclass such as a quantised layer) whose forward nobody has replaced on the
    instance (accelerate's offloading hooks do that): the layers :class:`PackedLinears` may route."""
    return type(module) is torch.nn.Linear and "forward" not in vars(module)


def linear_modules(root: torch.nn.Module) -> list[torch.nn.Linear]:
    """The plain linear layers under ``root`` (:func:`is_plain_linear`)."""
    return [m for m in root.modules() if is_plain_linear(m)]


def packable(modules: list[torch.nn.Linear], rows: int) -> bool:
    """Whether :class:`PackedLinears` applies to ``modules`` at ``rows`` rows (see the module docstring)."""
    if not modules or not MIN_PACKED_ROWS <= rows <= MAX_PACKED_ROWS or torch.is_grad_enabled():
        return False
    if not _mkl_ops_available():
        return False
    if any(m.weight.device.type != "cpu" or m.weight.dtype != torch.float32 for m in modules):
        return False
    return sum(m.weight.numel() * 4 for m in modules) * PACKED_SIZE_FACTOR <= PACK_BUDGET_BYTES


class PackedLinears:
    """Packed copies of ``modules``' weights for ``rows`` rows, used by their forwards while :meth:`installed`."""

    def __init__(self, modules: list[torch.nn.Linear], rows: int):
        self.modules = modules
        self.rows = 0
        self._packed: dict[int, torch.Tensor] = {}
        self.set_rows(rows)

    def set_rows(self, rows: int) -> None:
        """Re-pack for ``rows`` rows (no-op when unchanged; below :data:`MIN_PACKED_ROWS` the plain product
        runs)."""
        if rows == self.rows:
            return
        self.rows = rows
        self._packed = {}  # the old packing is dropped before the new one is made
        if rows < MIN_PACKED_ROWS:
            return
        with torch.no_grad():
            self._packed = {id(m): torch.ops.mkl._mkl_reorder_linear_weight(m.weight.detach(), rows)
                            for m in self.modules}

    def routes(self, module: torch.nn.Module, rows: int) -> bool:
        """Whether ``module`` called on ``rows`` rows runs on a packed weight."""
        return rows == self.rows and id(module) in self._packed

    def linear(self, x: torch.Tensor, module: torch.nn.Linear) -> torch.Tensor:
        """``module(x)`` through its packed weight when ``x`` has the packed row count."""
        if not self._packed or x.numel() // x.shape[-1] != self.rows:
            return torch.nn.functional.linear(x, module.weight, module.bias)
        return torch.ops.mkl._mkl_linear(x, self._packed[id(module)], module.weight, module.bias, self.rows)

    @contextlib.contextmanager
    def installed(self) -> Iterator["PackedLinears"]:
        """Route the modules' forwards through the packed weights (an instance attribute shadowing
        ``Linear.forward``), restored on exit."""
        for m in self.modules:
            m.forward = (lambda x, _m=m: self.linear(x, _m))
        try:
            yield self
        finally:
            for m in self.modules:
                m.__dict__.pop("forward", None)
