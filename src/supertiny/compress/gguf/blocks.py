"""llama.cpp's block formats with one scale per 32 weights (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0):
their grids, and the bytes of a tensor given integer codes chosen elsewhere (by GPTQ).

    fmt = FORMATS["q5_0"]
    scale, offset = fmt.scales(w)                # w [rows, cols] -> [rows, cols // 32] each
    codes = fmt.codes(w, scale_col, offset_col)  # nearest grid point, per column
    data = fmt.pack(codes, scale, offset)        # [rows, cols // 32 * fmt.block_bytes] uint8

A weight is ``scale * (code - zero) + offset``. The scales are llama.cpp's reference
quantizer's (``ggml-quants.c``): Q4_0/Q5_0 put the block's largest-magnitude weight on the
grid's end, Q8_0 scales by the block's largest magnitude, Q4_1/Q5_1 span the block's
[min, max]; scales and offsets are stored as float16, so the grid uses their float16 values.
gguf-py reads these blocks (``gguf.quants.dequantize``) but writes codes only by rounding to
nearest; choosing codes that keep a layer's output on the task (GPTQ) needs these pieces.
K-quants (256-weight super-blocks with quantized scales) are left to llama.cpp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

BLOCK = 32  # weights per block, for every format here


@dataclass(frozen=True)
class BlockFormat:
    """One format: codes in ``[0, levels)`` (Q8_0: ``[-127, 127]``), ``zero`` the code of 0."""

    name: str
    levels: int
    zero: int
    has_offset: bool
    block_bytes: int

    def scales(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """Per block of 32 consecutive weights of a row, the float16-exact scale and offset:
        ``w [rows, cols]`` -> two ``[rows, cols // 32]`` float32 tensors."""
        blocks = w.float().reshape(w.shape[0], -1, BLOCK)
        if self.has_offset:  # Q4_1 / Q5_1: the grid spans [min, max]
            low, high = blocks.amin(-1), blocks.amax(-1)
            scale, offset = (high - low) / (self.levels - 1), low
        elif self.name == "q8_0":
            scale, offset = blocks.abs().amax(-1) / 127, torch.zeros_like(blocks[..., 0])
        else:  # Q4_0 / Q5_0: the largest-magnitude weight lands on code 0 (-zero * scale)
            index = blocks.abs().argmax(-1, keepdim=True)
            scale = blocks.gather(-1, index).squeeze(-1) / -self.zero
            offset = torch.zeros_like(scale)
        return _f16(scale), _f16(offset)

    def codes(self, w: Tensor, scale: Tensor, offset: Tensor) -> Tensor:
        """The nearest grid codes of ``w`` (any shape) under ``scale``/``offset`` (same shape)."""
        inverse = torch.where(scale == 0, torch.zeros_like(scale), 1 / scale)
        raw = torch.round((w - offset) * inverse) + self.zero
        low, high = (-127, 127) if self.name == "q8_0" else (0, self.levels - 1)
        return raw.clamp(low, high)

    def values(self, codes: Tensor, scale: Tensor, offset: Tensor) -> Tensor:
        """The weights that ``codes`` stand for: ``scale * (codes - zero) + offset``."""
        return scale * (codes - self.zero) + offset

    def pack(self, codes: Tensor, scale: Tensor, offset: Tensor) -> np.ndarray:
        """``codes [rows, cols]`` and per-block ``scale``/``offset`` ``[rows, cols // 32]`` ->
        the tensor's bytes in llama.cpp's layout, ``[rows, cols // 32 * block_bytes]`` uint8."""
        rows, cols = codes.shape
        q = codes.to(torch.int64).reshape(rows, cols // BLOCK, BLOCK).numpy()
        parts = [_f16_bytes(scale)]
        if self.has_offset:
            parts.append(_f16_bytes(offset))
        if self.name == "q8_0":
            parts.append(q.astype(np.int8).view(np.uint8))
        else:
            q = q.astype(np.uint8)
            if self.levels == 32:  # the fifth bits of the 32 codes, as one little-endian uint32
                parts.append(np.packbits(q >> 4, axis=-1, bitorder="little"))
            low = q & 0x0F
            parts.append(low[..., : BLOCK // 2] | (low[..., BLOCK // 2 :] << 4))
        data = np.concatenate(parts, axis=-1)
        return np.ascontiguousarray(data.reshape(rows, -1))


FORMATS = {
    "q4_0": BlockFormat("q4_0", levels=16, zero=8, has_offset=False, block_bytes=18),
    "q4_1": BlockFormat("q4_1", levels=16, zero=0, has_offset=True, block_bytes=20),
    "q5_0": BlockFormat("q5_0", levels=32, zero=16, has_offset=False, block_bytes=22),
    "q5_1": BlockFormat("q5_1", levels=32, zero=0, has_offset=True, block_bytes=24),
    "q8_0": BlockFormat("q8_0", levels=255, zero=0, has_offset=False, block_bytes=34),
}


def _f16(x: Tensor) -> Tensor:
    return x.to(torch.float16).float()


def _f16_bytes(x: Tensor) -> np.ndarray:
    """``[rows, blocks]`` float -> ``[rows, blocks, 2]`` uint8 (little-endian float16)."""
    return x.to(torch.float16).numpy().astype("<f2").view(np.uint8).reshape(*x.shape, 2)
