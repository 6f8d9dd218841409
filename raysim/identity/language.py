"""Language (value) vectors: one vector per language, added at the final decoder block's output.

PSII injects a respondent's prompt-language vector as the plan's ``final_vector``, which the
engine's hooks add to the output of the last decoder block (layer n_layers, before the final
norm). The vector is trained and evaluated through those same hooks (:meth:`HFEngine.injected`):
a plan whose final vector is a trainable v (zeros at the start), the model frozen, AdamW on v
alone minimising next-token cross-entropy on text in the language. Held-out text (every 5th
document of the corpus) measures the effect, and a cross-language table checks that a language's
vector helps its own language more than the others.

Corpora: the packaged default (``data/corpus/<code>.txt``, short everyday paragraphs written for
this project, one per line), or Parquet files (a text column, ``text`` as in CulturaX, optionally
filtered by a language column) and .txt files.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from raysim.engine.hf import HFEngine
from raysim.engine.plan import InjectionPlan

LANGUAGES = ("en", "zh", "ar", "es", "ru")
HELDOUT_EVERY = 5

# Defaults sized for the embedded default (SmolLM2-135M, fp32) on a 2-core CPU with one thread:
# about 65 s of CPU per language, held-out evaluation included. The last block's output has norm
# ~750 there and Adam moves each coordinate by about lr per step, so lr 1.0 reaches a useful
# vector (norm 130-185, held-out loss down 0.24-0.35 nats/token) in 30 steps.
STEPS = 30
LR = 1.0
BATCH = 4
LENGTH = 64
EVAL_BATCH = 8

PathLike = str | Path


class CorpusError(ValueError):
    """A corpus that is missing, unreadable, empty or for an unknown language."""


# --------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class CorpusSplit:
    """One language's documents, split into training and held-out text."""

    train: tuple[str, ...]
    heldout: tuple[str, ...]


def check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise CorpusError(f"unknown language {language!r}; language vectors exist for {list(LANGUAGES)}")
    return language


def default_corpus_path(language: str) -> Path:
    """The packaged default corpus of ``language``: one paragraph per line."""
    check_language(language)
    return Path(str(resources.files("raysim.identity") / "data" / "corpus" / f"{language}.txt"))


def _read_txt(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    # Blank lines mark paragraphs (a line-wrapped document); otherwise every line is a document.
    if re.search(r"\n[ \t]*\n", text.strip()):
        parts = re.split(r"\n[ \t]*\n", text)
    else:
        parts = text.splitlines()
    return [p.strip() for p in parts if p.strip()]


def _read_parquet(path: Path, language: str, text_column: str, language_column: str | None,
                  max_texts: int | None) -> list[str]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:   # pyarrow raises its own error types for non-Parquet files
        raise CorpusError(f"{path}: not a readable Parquet file ({exc})") from None
    names = parquet.schema_arrow.names
    for column in (text_column, language_column):
        if column is not None and column not in names:
            raise CorpusError(f"{path}: no column {column!r} (columns: {names})")
    columns = [text_column] + ([language_column] if language_column else [])
    texts: list[str] = []
    # Batch by batch, so a large CulturaX shard can be sampled without reading all of it.
    for record in parquet.iter_batches(columns=columns, batch_size=4096):
        frame = record.to_pandas()
        if language_column:
            frame = frame[frame[language_column] == language]
        texts += [t.strip() for t in frame[text_column] if isinstance(t, str) and t.strip()]
        if max_texts is not None and len(texts) >= max_texts:
            break
    return texts


def read_corpus(paths: PathLike | Sequence[PathLike] | None, language: str, *, text_column: str = "text",
                language_column: str | None = None, max_texts: int | None = None) -> list[str]:
    """The documents of ``language`` in ``paths`` (Parquet or .txt), in file order.

    None reads the packaged default. Parquet: the ``text_column`` (CulturaX's ``text``), keeping
    only rows whose ``language_column`` equals ``language`` when one is named. Text: one document
    per line, or per paragraph when blank lines separate paragraphs. ``max_texts`` stops early.
    """
    check_language(language)
    if paths is None:
        paths = [default_corpus_path(language)]
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    texts: list[str] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise CorpusError(f"corpus file {path} does not exist")
        if path.suffix == ".parquet":
            texts += _read_parquet(path, language, text_column, language_column,
                                   None if max_texts is None else max_texts - len(texts))
        elif path.suffix == ".txt":
            texts += _read_txt(path)
        else:
            raise CorpusError(f"corpus file {path}: expected .parquet or .txt")
        if max_texts is not None and len(texts) >= max_texts:
            texts = texts[:max_texts]
            break
    if not texts:
        raise CorpusError(f"no {language} text in {[str(p) for p in paths]}")
    return texts


def split_heldout(texts: Sequence[str], every: int = HELDOUT_EVERY) -> CorpusSplit:
    """Every ``every``-th document (the 5th, 10th, ...) is held out; the rest trains."""
    if every < 2:
        raise ValueError(f"every must be >= 2, got {every}")
    heldout = tuple(texts[every - 1::every])
    train = tuple(t for i, t in enumerate(texts) if (i + 1) % every)
    if not train or not heldout:
        raise CorpusError(f"{len(texts)} documents cannot be split into training and held-out text "
                          f"(every {every}th is held out); need at least {every}")
    return CorpusSplit(train, heldout)


def load_corpus(languages: Sequence[str] = LANGUAGES,
                paths: Mapping[str, PathLike | Sequence[PathLike]] | None = None,
                **read_options: Any) -> dict[str, CorpusSplit]:
    """Each language's split corpus: ``paths[language]`` where given, else the packaged default."""
    paths = paths or {}
    unknown = set(paths) - set(languages)
    if unknown:
        raise CorpusError(f"corpus paths given for languages not trained: {sorted(unknown)}")
    return {lang: split_heldout(read_corpus(paths.get(lang), lang, **read_options)) for lang in languages}


def windows(tokenizer: Any, texts: Sequence[str], length: int, *, drop_last: bool = True) -> list[list[int]]:
    """The documents as one token stream (each followed by EOS), cut into windows of ``length``.

    ``drop_last`` drops a final shorter window (training batches stay unpadded); held-out scoring
    keeps it, so every token counts.
    """
    if length < 2:
        raise ValueError(f"window length must be >= 2, got {length}")
    stream: list[int] = []
    for text in texts:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"]
        stream.append(tokenizer.eos_token_id)
    cut = [stream[i:i + length] for i in range(0, len(stream), length)]
    if cut and (len(cut[-1]) < length if drop_last else len(cut[-1]) < 2):
        cut.pop()   # a 1-token window predicts nothing
    return cut


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class LanguageVector:
    language: str | None
    vector: np.ndarray
    """float32 [hidden]: added to the output of the last decoder block (the plan's final_vector)."""
    heldout_before: float
    """Mean next-token cross-entropy (nats/token) on the held-out text without the vector."""
    heldout_after: float
    steps: int
    tokens_seen: int
    parameters: dict[str, Any]
    train_losses: tuple[float, ...] = ()
    seconds: float = 0.0

    @property
    def change(self) -> float:
        return self.heldout_after - self.heldout_before


@contextmanager
def _frozen(model: torch.nn.Module) -> Iterator[None]:
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)


def _batch(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask (causal attention never looks right, so positions
    0..n-1 of every row are those of the row alone)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
    return ids.to(device), mask.to(device)


def _loss_sum(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over real (unpadded) targets, and their count."""
    logits = model(input_ids=ids, attention_mask=mask).logits
    # Shift the labels rather than the logits: the [B, L, vocab] logits stay contiguous (no copy).
    labels = torch.full_like(ids, -100)
    labels[:, :-1] = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
    return loss, int((labels != -100).sum())


def heldout_loss(engine: HFEngine, texts: Sequence[str], vector: np.ndarray | torch.Tensor | None = None,
                 *, length: int = LENGTH, batch: int = EVAL_BATCH) -> float:
    """Mean next-token cross-entropy (nats/token) on ``texts``, with ``vector`` injected as the
    final vector (None: the model as it is)."""
    rows = windows(engine.tokenizer, texts, length, drop_last=False)
    if not rows:
        raise CorpusError("held-out text is empty")
    total, count = 0.0, 0
    injected = engine.injected([InjectionPlan(final_vector=vector)]) if vector is not None else nullcontext()
    with torch.inference_mode(), injected:
        for start in range(0, len(rows), batch):
            loss, n = _loss_sum(engine.model, *_batch(rows[start:start + batch], engine.tokenizer.pad_token_id,
                                                      engine.device))
            total, count = total + float(loss), count + n
    return total / count


def _order(n: int, count: int, seed: int) -> np.ndarray:
    """``count`` window indices: successive seeded permutations of 0..n-1 (each window once per
    epoch)."""
    rng = np.random.default_rng(seed)
    epochs = -(-count // n)
    return np.concatenate([rng.permutation(n) for _ in range(epochs)])[:count]


def train_language_vector(engine: HFEngine, train_texts: Sequence[str], heldout_texts: Sequence[str], *,
                          language: str | None = None, steps: int = STEPS, lr: float = LR, batch: int = BATCH,
                          length: int = LENGTH, seed: int = 0, weight_decay: float = 0.0) -> LanguageVector:
    """Train one language vector on ``train_texts`` with the model frozen; measure on ``heldout_texts``.

    ``steps`` AdamW steps on v alone, each on ``batch`` windows of ``length`` tokens drawn in a
    seeded order. The model's weights are as before afterwards.
    """
    if language is not None:
        check_language(language)
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got steps={steps}, batch={batch}")
    started = time.perf_counter()
    model, tokenizer = engine.model, engine.tokenizer
    rows = windows(tokenizer, train_texts, length)
    if not rows:
        raise CorpusError(f"{language or 'the'} training text has fewer than {length} tokens")
    before = heldout_loss(engine, heldout_texts, None, length=length)

    v = torch.zeros(engine.hidden_size, dtype=torch.float32, device=engine.device, requires_grad=True)
    optimizer = torch.optim.AdamW([v], lr=lr, weight_decay=weight_decay)
    order = _order(len(rows), steps * batch, seed)
    losses = []
    with _frozen(model), torch.inference_mode(False), torch.enable_grad():
        for step in range(steps):
            picked = [rows[i] for i in order[step * batch:(step + 1) * batch]]
            # A plan per step: the hooks take v's current value (and its graph) when they activate.
            with engine.injected([InjectionPlan(final_vector=v)]):
                loss, n = _loss_sum(model, *_batch(picked, tokenizer.pad_token_id, engine.device))
            loss = loss / n
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    vector = v.detach().cpu().numpy().astype(np.float32)

    after = heldout_loss(engine, heldout_texts, vector, length=length)
    parameters = {"steps": steps, "lr": lr, "batch": batch, "length": length, "seed": seed,
                  "weight_decay": weight_decay, "optimizer": "AdamW", "train_windows": len(rows),
                  "train_documents": len(train_texts), "heldout_documents": len(heldout_texts),
                  "point": "output of the last decoder block (final_vector)"}
    return LanguageVector(language, vector, before, after, steps, steps * batch * length, parameters,
                          tuple(losses), time.perf_counter() - started)


def train_all(engine: HFEngine, corpus: Mapping[str, CorpusSplit], languages: Sequence[str] | None = None,
              **train_options: Any) -> dict[str, LanguageVector]:
    """A vector per language (``languages``: all of ``corpus``'s by default), same settings each."""
    out = {}
    for language in languages or list(corpus):
        if language not in corpus:
            raise CorpusError(f"no corpus for language {language!r} (have {sorted(corpus)})")
        split = corpus[language]
        out[language] = train_language_vector(engine, split.train, split.heldout, language=language,
                                              **train_options)
    return out


# --------------------------------------------------------------------------- reports


def summary(vectors: Mapping[str, LanguageVector]) -> pd.DataFrame:
    """Per language: held-out loss before and after, its change, the vector's norm, steps, time."""
    return pd.DataFrame(
        [(lang, v.heldout_before, v.heldout_after, v.change, float(np.linalg.norm(v.vector)), v.steps,
          v.tokens_seen, v.seconds) for lang, v in vectors.items()],
        columns=["language", "heldout_before", "heldout_after", "change", "norm", "steps", "tokens_seen",
                 "seconds"],
    ).set_index("language")


def cross_language(engine: HFEngine, vectors: Mapping[str, LanguageVector],
                   corpus: Mapping[str, CorpusSplit], *, length: int = LENGTH) -> pd.DataFrame:
    """Change in held-out loss (nats/token, negative = better) from adding each trained vector
    (rows) on every language's held-out text (columns). A language vector should lower its own
    language's loss more than any other's: the diagonal is each row's minimum."""
    base = {lang: heldout_loss(engine, split.heldout, None, length=length) for lang, split in corpus.items()}
    table = pd.DataFrame(
        {lang: [heldout_loss(engine, split.heldout, v.vector, length=length) - base[lang]
                for v in vectors.values()] for lang, split in corpus.items()},
        index=pd.Index(list(vectors), name="vector"),
    )
    table.columns.name = "heldout"
    return table
