"""Language vectors: trained at the last decoder block's output, through the engine's injection
hooks, with the model frozen.

Most tests use a tiny random Llama with the embedded default's tokenizer (so the five languages
tokenise as they do for the real model: byte-level pieces for zh, Cyrillic and Arabic pieces, ...);
one runs a few steps on the embedded default itself.
"""

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoConfig, AutoTokenizer

from raysim.engine.backends import make_engine
from raysim.engine.hf import HFEngine
from raysim.engine.loading import ModelSpec, decoder_layers, embedded_default_dir, prepare, random_model
from raysim.engine.plan import InjectionPlan, Term
from raysim.identity import language as lang
from raysim.identity.language import LANGUAGES, CorpusError

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(steps=12, lr=0.5, batch=4, length=32)


@pytest.fixture(scope="module")
def tiny() -> HFEngine:
    tokenizer = AutoTokenizer.from_pretrained(embedded_default_dir())
    config = AutoConfig.for_model(
        "llama", vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2, attn_implementation="sdpa",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    return HFEngine(prepare(random_model(config), tokenizer, "tiny-llama"))


@pytest.fixture(scope="module")
def corpus():
    # A few held-out documents per language: the tiny model's 49k-token vocabulary makes each
    # evaluated token cost as much as in the real model.
    return {code: lang.CorpusSplit(split.train, split.heldout[:4]) for code, split in lang.load_corpus().items()}


def _checksum(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, p in model.state_dict().items():
        digest.update(name.encode() + p.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _logits(engine: HFEngine) -> torch.Tensor:
    ids = torch.tensor([engine.tokenizer("The weather is cold today.")["input_ids"]])
    with torch.inference_mode():
        return engine.model(ids).logits


def _diagonal_is_row_minimum(table: pd.DataFrame) -> None:
    for vector in table.index:
        own = table.loc[vector, vector]
        assert own < 0, f"{vector} vector does not lower {vector} held-out loss: {table}"
        for other in table.columns.drop(vector):
            assert own < table.loc[vector, other], f"{vector} vector helps {other} more:\n{table}"


# --------------------------------------------------------------------------- training


def test_vector_helps_its_own_language_most(tiny, corpus):
    vectors = lang.train_all(tiny, corpus, **TINY)
    assert list(vectors) == list(LANGUAGES)
    for code, v in vectors.items():
        assert v.language == code and v.vector.dtype == np.float32 and v.vector.shape == (tiny.hidden_size,)
        assert v.heldout_after < v.heldout_before
        assert v.steps == TINY["steps"] and v.tokens_seen == TINY["steps"] * TINY["batch"] * TINY["length"]
        assert v.parameters["lr"] == TINY["lr"] and len(v.train_losses) == TINY["steps"]
    table = lang.cross_language(tiny, vectors, corpus, length=TINY["length"])
    assert list(table.index) == list(LANGUAGES) and list(table.columns) == list(LANGUAGES)
    _diagonal_is_row_minimum(table)
    # The table's diagonal is the training run's own held-out change.
    for code, v in vectors.items():
        assert table.loc[code, code] == pytest.approx(v.change, abs=1e-5)
    summary = lang.summary(vectors)
    assert (summary["change"] < 0).all() and list(summary.index) == list(LANGUAGES)


def test_model_and_hooks_unchanged_and_deterministic(tiny, corpus):
    before_sum, before_logits = _checksum(tiny.model), _logits(tiny)
    flags = [p.requires_grad for p in tiny.model.parameters()]
    hooks = [len(block._forward_hooks) for block in decoder_layers(tiny.model)]
    split = corpus["ru"]
    first = lang.train_language_vector(tiny, split.train, split.heldout, language="ru", seed=3, **TINY)
    second = lang.train_language_vector(tiny, split.train, split.heldout, language="ru", seed=3, **TINY)
    other = lang.train_language_vector(tiny, split.train, split.heldout, language="ru", seed=4, **TINY)
    assert np.array_equal(first.vector, second.vector)
    assert first.heldout_after == second.heldout_after
    assert not np.array_equal(first.vector, other.vector)     # the seed orders the windows
    assert np.abs(first.vector).max() > 0.1
    assert _checksum(tiny.model) == before_sum
    assert [p.requires_grad for p in tiny.model.parameters()] == flags
    assert torch.equal(_logits(tiny), before_logits)
    assert [len(block._forward_hooks) for block in decoder_layers(tiny.model)] == hooks and tiny.hooks.idle


def test_trained_where_the_engine_injects(tiny, corpus):
    split = corpus["zh"]
    trained = lang.train_language_vector(tiny, split.train, split.heldout, language="zh", **TINY)

    def loss_under(plan: InjectionPlan) -> float:
        with tiny.injected([plan]):
            return lang.heldout_loss(tiny, split.heldout, None, length=TINY["length"])

    # The final vector is a term at the last block's output; one block earlier is a different
    # model, so the equalities are informative.
    assert loss_under(InjectionPlan(final_vector=trained.vector)) == pytest.approx(trained.heldout_after, rel=1e-6)
    at_last = InjectionPlan((Term(tiny.n_layers, trained.vector),))
    assert loss_under(at_last) == pytest.approx(trained.heldout_after, rel=1e-6)
    one_block_early = loss_under(InjectionPlan((Term(tiny.n_layers - 1, trained.vector),)))
    assert abs(one_block_early - trained.heldout_after) > 1e-3


def test_embedded_default_few_steps():
    engine = make_engine(ModelSpec())
    corpus = {code: lang.CorpusSplit(split.train, split.heldout[:4])
              for code, split in lang.load_corpus(("en", "zh")).items()}
    before = _checksum(engine.model)
    vectors = lang.train_all(engine, corpus, steps=6, batch=2, length=64)
    table = lang.cross_language(engine, vectors, corpus)
    _diagonal_is_row_minimum(table)
    assert _checksum(engine.model) == before


def test_heldout_loss_rejects_wrong_size(tiny):
    with pytest.raises(ValueError, match="final_vector has size 65, model hidden size is 64"):
        lang.heldout_loss(tiny, ["Hello there."], np.zeros(tiny.hidden_size + 1, np.float32))


# --------------------------------------------------------------------------- corpus


def test_default_corpus():
    for code in LANGUAGES:
        texts = lang.read_corpus(None, code)
        assert len(texts) == 60
        split = lang.split_heldout(texts)
        assert len(split.train) == 48 and split.heldout == tuple(texts[4::5])
        assert not set(split.train) & set(split.heldout)
    assert "的" in "".join(lang.read_corpus(None, "zh"))
    assert "ال" in "".join(lang.read_corpus(None, "ar"))
    assert "что" in "".join(lang.read_corpus(None, "ru"))


def test_windows(tiny):
    texts = ["One two three.", "Four five six seven."]
    stream = []
    for t in texts:
        stream += tiny.tokenizer(t, add_special_tokens=False)["input_ids"] + [tiny.tokenizer.eos_token_id]
    full = lang.windows(tiny.tokenizer, texts, 4)
    assert all(len(w) == 4 for w in full) and sum(full, []) == stream[: 4 * (len(stream) // 4)]
    assert sum(lang.windows(tiny.tokenizer, texts, 4, drop_last=False), []) == stream


def test_read_parquet_and_txt(tmp_path):
    frame = pd.DataFrame({"text": ["Hola a todos.", "Hello all.", "  ", None, "Buenos días."],
                          "lang": ["es", "en", "es", "es", "es"]})
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "mixed.parquet")
    assert lang.read_corpus(tmp_path / "mixed.parquet", "es", language_column="lang") == ["Hola a todos.",
                                                                                          "Buenos días."]
    assert lang.read_corpus([tmp_path / "mixed.parquet"], "en") == ["Hola a todos.", "Hello all.", "Buenos días."]
    assert lang.read_corpus(tmp_path / "mixed.parquet", "es", language_column="lang", max_texts=1) == ["Hola a todos."]
    pq.write_table(pa.table({"content": ["Привет."]}), tmp_path / "other.parquet")
    assert lang.read_corpus(tmp_path / "other.parquet", "ru", text_column="content") == ["Привет."]

    (tmp_path / "lines.txt").write_text("First line.\nSecond line.\n\n", encoding="utf-8")
    (tmp_path / "paras.txt").write_text("A wrapped\nparagraph.\n\nAnother one.\n", encoding="utf-8")
    assert lang.read_corpus([tmp_path / "lines.txt", tmp_path / "paras.txt"], "en") == [
        "First line.", "Second line.", "A wrapped\nparagraph.", "Another one."]
    corpus = lang.load_corpus(("en", "es"), {"en": [tmp_path / "lines.txt"] * 5})
    assert corpus["en"].heldout == ("First line.", "Second line.") and len(corpus["en"].train) == 8
    assert len(corpus["es"].train) == 48     # the packaged default where no path is given


def test_corpus_errors(tmp_path, tiny):
    with pytest.raises(CorpusError, match="does not exist"):
        lang.read_corpus(tmp_path / "missing.parquet", "en")
    pq.write_table(pa.table({"content": ["x"]}), tmp_path / "notext.parquet")
    with pytest.raises(CorpusError, match="no column 'text'"):
        lang.read_corpus(tmp_path / "notext.parquet", "en")
    with pytest.raises(CorpusError, match="no column 'language'"):
        lang.read_corpus(tmp_path / "notext.parquet", "en", text_column="content", language_column="language")
    with pytest.raises(CorpusError, match="unknown language 'fr'"):
        lang.read_corpus(None, "fr")
    with pytest.raises(CorpusError, match="unknown language 'de'"):
        lang.load_corpus(("en", "de"))
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(CorpusError, match="no zh text"):
        lang.read_corpus(tmp_path / "empty.txt", "zh")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(CorpusError, match="not a readable Parquet"):
        lang.read_corpus(tmp_path / "bad.parquet", "en")
    (tmp_path / "data.csv").write_text("text\nx\n")
    with pytest.raises(CorpusError, match=".parquet or .txt"):
        lang.read_corpus(tmp_path / "data.csv", "en")
    with pytest.raises(CorpusError, match="at least 5"):
        lang.split_heldout(["a", "b", "c"])
    with pytest.raises(CorpusError, match="fewer than 64 tokens"):
        lang.train_language_vector(tiny, ["Hi."], ["Hi."], length=64)
