"""GPTQ onto the NVFP4 grid: round a weight column by column and push each column's
rounding error onto the columns not yet rounded, in proportion to how the layer's inputs
correlate (Frantar et al., 2022), so that the layer's output on calibration inputs, not
its weights, stays close to the original.

The grid is modelopt's: a block scale per 16 consecutive columns of a row and one global
scale, and the result is packed exactly as round-to-nearest packs it, so any NVFP4 reader
(vLLM's ``modelopt_fp4``, our CPU path) loads it unchanged. A block's scale is chosen when
GPTQ reaches the block's first column, from the weights as earlier error compensation has
left them (by amax, or by :mod:`scale_search`); in act-order, from the original weights.

``hessian`` is ``X^T X`` of the layer's input over the calibration tokens (any positive
multiple of it gives the same result). ``damp`` adds ``damp * diag(H)`` to it, shrinking
it toward its diagonal: with about a thousand calibration tokens and up to a few
thousand input features, ``X^T X`` measures each input's energy well but the
correlations between inputs poorly, and undamped GPTQ fits the calibration text at the
cost of everything else (on SmolLM2 it then scores worse than round-to-nearest on held-out
text). A further 1% of the mean diagonal, GPTQ's usual damping, keeps the factorisation
defined for inputs the calibration text never exercised.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from switchyard.engine.quantization.scale_search import round_to_grid, search_block_scales
from switchyard.kernels.quant.reference import BLOCK_SIZE, check_finite, pack_e2m1

# Columns updated together before the lazy rank-B update of the rest (GPTQ's "lazy
# batch" trick); a multiple of BLOCK_SIZE so block scales are set inside a batch.
BATCH_COLUMNS = 128
STABILITY_DAMP = 0.01


def inverse_hessian_factor(hessian: torch.Tensor, damp: float) -> torch.Tensor:
    """The upper Cholesky factor of ``(H + damp * diag(H) + 0.01 * mean(diag H) * I)^-1``,
    in fp64 for stability; inputs no calibration token exercised get a unit diagonal."""
    h = hessian.double().clone()
    diagonal = h.diagonal()
    diagonal[diagonal == 0] = 1.0
    diagonal += damp * diagonal + STABILITY_DAMP * diagonal.mean()
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return torch.linalg.cholesky(inverse, upper=True)


def gptq_nvfp4(
    w: torch.Tensor,
    hessian: torch.Tensor,
    global_scale: torch.Tensor,
    damp: float,
    scale_factors: Sequence[float] = (),
    act_order: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(packed, block_scales, global_scale)`` of ``w [rows, cols]``, as
    ``nvfp4_quantize_reference`` returns them, with codes chosen by GPTQ under ``hessian``
    ``[cols, cols]``. Block scales are searched over ``scale_factors``
    (:func:`scale_search.search_block_scales`, weighted by the Hessian's diagonal); with
    none, each is modelopt's amax scale.

    ``act_order`` rounds the columns in order of falling Hessian diagonal (GPTQ's
    "act-order"): the inputs that carry the most energy are rounded first, while every
    column after them can still absorb their error. Their blocks are then no longer
    reached at their first column, so every block's scale is chosen up front from the
    original weights ("static groups")."""
    rows, cols = w.shape
    if cols % BLOCK_SIZE or hessian.shape != (cols, cols):
        raise ValueError(f"w {tuple(w.shape)} and hessian {tuple(hessian.shape)} do not match")
    check_finite(w)
    global_scale = torch.as_tensor(global_scale, dtype=torch.float32)
    importance = hessian.diagonal().float()
    if act_order:
        order = torch.argsort(importance, descending=True, stable=True)
        block_scales = search_block_scales(w, global_scale, scale_factors, importance)
        static_divisors = (block_scales.float() * global_scale).repeat_interleave(
            BLOCK_SIZE, dim=1
        )[:, order]
    else:
        order = torch.arange(cols)
        block_scales = torch.empty(rows, cols // BLOCK_SIZE, dtype=torch.float8_e4m3fn)
    factor = inverse_hessian_factor(hessian[order][:, order], damp).float()
    weights = w.float()[:, order].clone()
    codes = torch.empty(rows, cols, dtype=torch.uint8)
    divisor = torch.empty(rows)
    for start in range(0, cols, BATCH_COLUMNS):
        end = min(start + BATCH_COLUMNS, cols)
        batch = weights[:, start:end].clone()
        errors = torch.empty_like(batch)
        for i in range(end - start):
            column = start + i
            if act_order:
                divisor = static_divisors[:, column]
            elif column % BLOCK_SIZE == 0:
                group = slice(column, column + BLOCK_SIZE)
                scales = search_block_scales(
                    batch[:, i : i + BLOCK_SIZE], global_scale, scale_factors, importance[group]
                ).reshape(rows)
                block_scales[:, column // BLOCK_SIZE] = scales
                divisor = scales.float() * global_scale
            codes[:, order[column]], rounded = round_to_grid(batch[:, i], divisor)
            error = (batch[:, i] - rounded) / factor[column, column]
            batch[:, i:] -= error.unsqueeze(1) * factor[column, column:end].unsqueeze(0)
            errors[:, i] = error
        weights[:, end:] -= errors @ factor[start:end, end:]
    return pack_e2m1(codes), block_scales, global_scale.reshape(())
