"""Test helpers shared by the engine test modules."""

import numpy as np
import torch

from raysim.engine.base import Request
from raysim.engine.hf import HFEngine


def brute_force(engine: HFEngine, request: Request, temperature: float = 1.0) -> np.ndarray:
    """Option probabilities from log P(answer + end | full prompt), each complete sequence run on
    its own (no prefix cache, no packing), under the request's plan, each token's probability
    under softmax(logits / temperature)."""
    full = engine.chat(request.prefix + request.question, add_generation_prompt=True)
    ids = engine.encode(full)
    out = []
    for option in request.options:
        cont = engine.encode_pair(full, option.text + engine.end_of_answer)[1]
        seq = torch.tensor([ids + cont], device=engine.device)
        with torch.inference_mode(), engine.hooks.active([request.plan], engine.device, engine.loaded.dtype):
            logits = engine.model(seq, position_ids=torch.arange(seq.shape[1], device=engine.device)[None]).logits[0]
        logp = torch.log_softmax(logits.double() / temperature, -1)
        out.append(sum(float(logp[len(ids) - 1 + i, t]) for i, t in enumerate(cont)))
    out = np.array(out)
    return np.exp(out - np.logaddexp.reduce(out))
