"""The model arguments the subcommands that load one share."""

from __future__ import annotations

import argparse

from ..engine.loading import ModelSpec


def add_model_arguments(p: argparse.ArgumentParser, what: str = "model") -> None:
    p.add_argument("--model", default="embedded", help=f"{what} name_or_path (default: the embedded default)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                   help="where the model runs (default cpu; cuda on GPU nodes)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])


def model_spec(a: argparse.Namespace) -> ModelSpec:
    return ModelSpec(name_or_path=a.model, dtype=a.dtype, device=a.device)
