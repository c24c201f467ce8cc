"""NVFP4 block scales chosen by search instead of by each block's amax.

Round-to-nearest (modelopt's rule) gives every 16-element block the scale that maps its
largest magnitude onto E2M1's 6.0. With only eight magnitudes on the grid
(0, 0.5, 1, 1.5, 2, 3, 4, 6), that is rarely the scale with the least error: a slightly
smaller one clips the largest element a little and resolves the rest better, a slightly
larger one can put more elements on grid points. So each block tries the E4M3 scales
near ``amax / 6`` and keeps the one with the least squared error, each element weighted
by how much its input column matters (the diagonal of the calibration Hessian ``X^T X``,
or uniformly without one). The RTN scale is among the candidates and wins ties, so the
error never exceeds RTN's and a search that finds nothing better writes RTN's bytes.

Only the choice of codes and block scales changes; the format is modelopt's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from switchyard.kernels.quant.reference import (
    BLOCK_SIZE,
    E2M1_VALUES,
    amax_block_scales,
    e2m1_codes,
    e4m3_block_scales,
    pack_e2m1,
)


def round_to_grid(w: torch.Tensor, divisor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``w`` rounded to nearest on the E2M1 grid scaled by ``divisor`` (broadcast against
    ``w``; block scale times global scale): ``(codes, values)``, values in fp32 exactly as
    the reference dequantizes them. A zero divisor (all-zero tensor) reads back as +0."""
    scaled = torch.where(divisor == 0, 0.0, w / divisor)
    codes = e2m1_codes(scaled)
    table = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=w.device)
    return codes, table[codes.long()] * divisor


def search_block_scales(
    w: torch.Tensor,
    global_scale: torch.Tensor,
    factors: Sequence[float],
    importance: torch.Tensor | None = None,
) -> torch.Tensor:
    """E4M3 block scales ``[rows, cols / 16]`` for ``w [rows, cols]``: per block, the
    candidate ``fp8(amax / (6 * global) * f)``, ``f`` in ``(1.0, *factors)``, with the least
    ``sum(importance * (w - q)^2)`` over the block; ``importance [cols]`` defaults to 1."""
    rows, cols = w.shape
    blocks = w.float().reshape(rows, cols // BLOCK_SIZE, BLOCK_SIZE)
    weight = (
        torch.ones(cols, device=w.device) if importance is None else importance.float()
    ).reshape(cols // BLOCK_SIZE, BLOCK_SIZE)
    base = amax_block_scales(blocks, global_scale)
    factor = torch.tensor((1.0, *factors), device=w.device).reshape(-1, 1, 1)
    # [candidates, rows, blocks], E4M3-rounded but kept in fp32 (exact) to gather from.
    scales = e4m3_block_scales(base * factor).float()
    values = round_to_grid(blocks, (scales * global_scale).unsqueeze(-1))[1]
    error = ((blocks - values).square() * weight).sum(-1)
    best = error.argmin(0, keepdim=True)  # the first minimum: RTN's scale wins ties
    return scales.gather(0, best).squeeze(0).to(torch.float8_e4m3fn)


def encode(w: torch.Tensor, block_scales: torch.Tensor, global_scale: torch.Tensor) -> torch.Tensor:
    """The packed codes of ``w [rows, cols]`` rounded to nearest under given block scales."""
    divisor = (block_scales.float() * global_scale).repeat_interleave(BLOCK_SIZE, dim=1)
    return pack_e2m1(round_to_grid(w.float(), divisor)[0])
