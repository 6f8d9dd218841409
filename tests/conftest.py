"""Test-wide settings: everything runs offline (no model hub is reachable here)."""

import importlib.util
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# The vLLM engine's tests run in the vLLM environment (`make test` builds it and runs them there).
collect_ignore = [] if importlib.util.find_spec("vllm") else ["vllm_backend"]


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module: ops on tiny models gain nothing from more, and on a
    shared 2-core machine a busy neighbour makes OpenMP's spinning workers orders of magnitude
    slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
