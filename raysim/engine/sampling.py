"""Counter-based sampling shared by every backend.

Gumbel-max with uniforms keyed by (seed, step, token id): a row's draw depends on nothing else in
its batch, so the HF engine (which samples a padded batch) and the vLLM engine (which samples
inside vLLM's continuous batch, through a logits processor) draw the same token from the same
logits.
"""

from __future__ import annotations

import torch

from raysim.engine.noise import uniforms


def sample(logits: torch.Tensor, temperature: float, top_k: int, top_p: float,
           seeds: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """One token per row of ``logits`` [B, V] (float32) for per-row seeds [B] and steps [B];
    temperature <= 0 is greedy."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if 0 < top_k < logits.shape[-1] and top_p >= 1.0:
        # Gumbel noise for the k candidates only (the same uniforms a full draw gives them):
        # drawing for the whole vocabulary cost more than the model's decode step.
        top, ids = torch.topk(logits, top_k, dim=-1)
        u = uniforms(seeds, steps, ids).to(logits.device)
        gumbel = -torch.log(-torch.log(u.clamp(max=1 - 1e-12)))
        pick = (torch.log_softmax(top, dim=-1) + gumbel.float()).argmax(dim=-1)
        return ids.gather(-1, pick[:, None])[:, 0]
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop = cum - torch.softmax(sorted_logits, dim=-1) >= top_p  # keep the first over p
        logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    u = uniforms(seeds, steps, logits.shape[-1]).to(logits.device)
    gumbel = -torch.log(-torch.log(u.clamp(max=1 - 1e-12)))
    return (torch.log_softmax(logits, dim=-1) + gumbel.float()).argmax(dim=-1)
