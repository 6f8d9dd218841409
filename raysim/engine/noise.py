"""Counter-based noise: ε as a pure function of (seed, term, absolute position, dimension).

No generator state: the value for one request depends on nothing else in its batch, its row, its
padding or the order of calls, and any backend (HF now, vLLM later) that evaluates the same integer
hash gets the same numbers. The hash is splitmix64 on int64 tensors (wrap-around multiplication,
logical shifts emulated with masks), evaluated on the tensors' device; uniforms become normals
through Box–Muller.
"""

from __future__ import annotations

import hashlib
import math

import torch


def _signed(x: int) -> int:
    """A 64-bit constant as the int64 torch stores."""
    return x - (1 << 64) if x >= 1 << 63 else x


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_M1 = _signed(0xBF58476D1CE4E5B9)
_M2 = _signed(0x94D049BB133111EB)
_LOW32 = 0xFFFFFFFF
_TWO32 = float(1 << 32)

# Streams separate uses of the hash so that, e.g., sampling never reuses injection noise.
SAMPLING_STREAM = -1


def _lsr(x: torch.Tensor, k: int) -> torch.Tensor:
    # torch's >> on int64 is arithmetic; masking the sign-extended bits makes it logical.
    return (x >> k) & ((1 << (64 - k)) - 1)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser: a bijection of 64-bit words with full avalanche."""
    z = x + _GOLDEN
    z = (z ^ _lsr(z, 30)) * _M1
    z = (z ^ _lsr(z, 27)) * _M2
    return z ^ _lsr(z, 31)


def _words(seeds: torch.Tensor, stream: int, counters: torch.Tensor, dims: int | torch.Tensor) -> torch.Tensor:
    """64-bit hash words [..., n] for seeds [B], counters [B, ...] and dimensions 0..n-1 (or the
    dimensions ``dims`` [B, ..., n] given)."""
    seeds = seeds.to(torch.int64).reshape(seeds.shape + (1,) * (counters.ndim - 1))
    h = _mix(_mix(_mix(seeds) ^ stream) ^ counters.to(torch.int64))
    if isinstance(dims, int):
        dims = torch.arange(dims, device=counters.device, dtype=torch.int64)
    return _mix(h.unsqueeze(-1) ^ dims.to(torch.int64))


def _unit(words: torch.Tensor, high: bool) -> torch.Tensor:
    """32 bits of each word as a float64 uniform: high half in (0, 1], low half in [0, 1)."""
    if high:
        return (_lsr(words, 32) + 1).to(torch.float64) / _TWO32
    return (words & _LOW32).to(torch.float64) / _TWO32


def normals(seeds: torch.Tensor, term: int, positions: torch.Tensor, dim: int,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normals [B, T, dim] for per-row seeds [B], one term and positions [B, T]."""
    if term < 0:
        raise ValueError("term index must be >= 0 (negative streams are reserved)")
    words = _words(seeds, term, positions, dim)
    radius = torch.sqrt(-2.0 * torch.log(_unit(words, high=True)))
    return (radius * torch.cos(2.0 * math.pi * _unit(words, high=False))).to(dtype)


def uniforms(seeds: torch.Tensor, counters: torch.Tensor, n: int | torch.Tensor,
             stream: int = SAMPLING_STREAM) -> torch.Tensor:
    """Uniforms in (0, 1] of shape [B, n] for per-row seeds [B] and counters [B] (e.g. a step), at
    dimensions 0..n-1 or at the dimensions [B, n] given: a dimension's value does not depend on
    which others are drawn (sampling draws only for its top-k candidates)."""
    return _unit(_words(seeds, stream, counters, n), high=True)


def derive_seed(seed: int, key: str) -> int:
    """A seed for ``key`` derived deterministically from ``seed`` (noise scope ``question``)."""
    digest = hashlib.sha256(f"{int(seed)}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def as_seed(seed: int) -> int:
    """Any Python int folded into the int64 range the hash takes."""
    return _signed(int(seed) & ((1 << 64) - 1))
