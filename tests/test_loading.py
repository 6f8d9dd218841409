"""Model loading: embedded-default conversion and cache, load_model, random-init presets."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may be downloaded; must hold before transformers loads

from pathlib import Path

import pytest
import torch
import transformers

from raysim.engine import loading
from raysim.engine.loading import (
    EMBEDDED_INSTALL_HINT,
    EMBEDDED_NAME,
    ModelSpec,
    PresetError,
    decoder_layers,
    embedded_default_dir,
    load_model,
    model_preset,
    preset_names,
)

PSII_REFERENCE = {  # docs/design.md, "Models"
    "qwen2.5-7b": ((14, 18, 22), 0.30),
    "qwen2.5-14b": ((24, 32, 38), 0.35),
    "llama-3.1-8b": ((16, 21, 26), 0.07),
    "mistral-small-24b": ((20, 26, 32), 0.09),
}
DEMOGRAPHIC_ATTRIBUTES = {
    "Q260", "Q263", "Q271", "Q273", "Q275", "Q279", "Q281", "Q284", "Q285", "Q286", "Q287", "Q288", "Q289",
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Convert once into a fresh cache (RAYSIM_CACHE points there for the whole module) and keep
    the GGUF-loaded model that the conversion itself read, so the GGUF is parsed only once."""
    cache = tmp_path_factory.mktemp("raysim_cache")
    seen = {}
    real_load_gguf = loading.load_gguf

    def capture(gguf):
        seen["model"], seen["tokenizer"] = real_load_gguf(gguf)
        return seen["model"], seen["tokenizer"]

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAYSIM_CACHE", str(cache))
        mp.setattr(loading, "load_gguf", capture)
        directory = embedded_default_dir()
        mp.setattr(loading, "load_gguf", real_load_gguf)
        yield directory, seen["model"]


@pytest.fixture(scope="module")
def embedded(converted):
    return load_model(ModelSpec())


def test_conversion_writes_a_complete_model_directory(converted):
    directory, _ = converted
    assert directory.name == EMBEDDED_NAME
    names = {p.name for p in directory.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
    assert "quantization_config" not in (directory / "config.json").read_text()
    # no staging leftovers beside it
    assert [p.name for p in directory.parent.iterdir()] == [EMBEDDED_NAME]


def test_converted_logits_equal_the_gguf_model(converted, embedded):
    _, gguf_model = converted
    ids = embedded.tokenizer("How important is family in your life? Answer 1-4.", return_tensors="pt")
    with torch.no_grad():
        expected = gguf_model(**ids).logits
        got = embedded.model(**ids).logits
    # Same fp32 weights, same kernels: equal to float rounding (in practice bit-identical).
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_second_call_reuses_the_cache(converted, monkeypatch):
    directory, _ = converted
    weights = directory / "model.safetensors"
    mtime = weights.stat().st_mtime_ns

    def must_not_run(*_):
        raise AssertionError("the GGUF was read again")

    monkeypatch.setattr(loading, "load_gguf", must_not_run)
    monkeypatch.setattr(loading, "_convert_gguf", must_not_run)
    assert embedded_default_dir() == directory
    assert weights.stat().st_mtime_ns == mtime


def test_concurrent_conversion_loser_keeps_the_winners_directory(tmp_path, monkeypatch):
    target = tmp_path / EMBEDDED_NAME

    def convert_while_another_process_wins(_gguf, out_dir: Path):
        (out_dir / "config.json").write_text("loser")
        target.mkdir()  # the other process renames its finished directory into place first
        (target / "config.json").write_text("winner")

    monkeypatch.setattr(loading, "_convert_gguf", convert_while_another_process_wins)
    verified = []   # (the stand-in weights are not the embedded ones)
    monkeypatch.setattr(loading, "verify_embedded", verified.append)
    assert embedded_default_dir(tmp_path) == target
    assert verified == [target]
    assert (target / "config.json").read_text() == "winner"
    assert [p.name for p in tmp_path.iterdir()] == [EMBEDDED_NAME]


def test_missing_gguf_package_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(loading.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=EMBEDDED_INSTALL_HINT.replace(".", r"\.")):
        embedded_default_dir(tmp_path)


def test_chat_template_renders_system_and_user(embedded):
    messages = [
        {"role": "system", "content": "You are a 34-year-old teacher in Norway."},
        {"role": "user", "content": "How important is work in your life?"},
    ]
    text = embedded.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a 34-year-old teacher in Norway.<|im_end|>\n"
        "<|im_start|>user\nHow important is work in your life?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_embedded_model_is_ready_for_inference(embedded):
    assert embedded.name == EMBEDDED_NAME
    assert (embedded.n_layers, embedded.hidden_size) == (30, 576)
    layers = decoder_layers(embedded.model)
    assert len(layers) == 30
    assert layers[0].self_attn.q_proj.in_features == 576
    assert not embedded.model.training
    assert not any(p.requires_grad for p in embedded.model.parameters())
    assert embedded.tokenizer.pad_token is not None
    assert embedded.tokenizer.padding_side == "left"
    assert embedded.dtype == torch.float32 and embedded.device.type == "cpu"


def test_fingerprint_is_stable_and_tells_models_apart(embedded):
    again = load_model(ModelSpec(dtype="bfloat16"))
    assert len(embedded.fingerprint) == 16
    assert again.fingerprint == embedded.fingerprint  # same weights, other dtype
    changed = load_model(ModelSpec())
    with torch.no_grad():
        decoder_layers(changed.model)[0].input_layernorm.weight.mul_(2)
    assert loading.fingerprint(changed.model) != embedded.fingerprint


def test_trust_remote_code_is_off_by_default(converted, monkeypatch):
    directory, _ = converted
    calls = []

    def spy(original):
        def wrapper(*args, **kwargs):
            calls.append(kwargs.get("trust_remote_code", "not passed"))
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        transformers.AutoModelForCausalLM, "from_pretrained", spy(transformers.AutoModelForCausalLM.from_pretrained)
    )
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", spy(transformers.AutoTokenizer.from_pretrained))
    loaded = load_model(ModelSpec(name_or_path=str(directory)))  # a local path this time
    assert ModelSpec().trust_remote_code is False
    assert calls == [False, False]  # tokenizer and model, passed explicitly
    assert loaded.name == str(directory) and loaded.n_layers == 30


def test_random_init_of_a_qwen_7b_architecture(converted):
    # bf16 halves the memory and time of initialising the 152k x 3584 embedding and head on CPU
    loaded = load_model(ModelSpec(random_init="qwen2.5-7b", n_layers=2, dtype="bfloat16"))
    config = loaded.model.config
    assert loaded.dtype == torch.bfloat16
    assert type(loaded.model).__name__ == "Qwen2ForCausalLM"
    assert (loaded.n_layers, loaded.hidden_size) == (2, 3584)
    assert (config.num_attention_heads, config.num_key_value_heads) == (28, 4)
    attention = decoder_layers(loaded.model)[0].self_attn
    assert attention.k_proj.out_features == 4 * 128  # KV heads x head dim 3584 / 28
    assert decoder_layers(loaded.model)[0].mlp.up_proj.out_features == 18944
    assert config.rope_parameters["rope_theta"] == 1_000_000.0
    weight = loaded.model.get_input_embeddings().weight
    assert weight.shape == (152064, 3584)
    assert 0.015 < weight[:1000].float().std().item() < 0.025  # initialised (normal, std 0.02), not empty memory
    ids = loaded.tokenizer("Family is very important.", return_tensors="pt")
    assert int(ids["input_ids"].max()) < config.vocab_size
    with torch.no_grad():
        logits = loaded.model(**ids).logits
    assert logits.shape[-1] == 152064 and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", ["qwen2.5-7b", "qwen2.5-14b", "llama-3.1-8b", "mistral-small-24b"])
def test_every_architecture_config_builds(name):
    config = loading.architecture_config(name, n_layers=1)
    assert config.num_hidden_layers == 1
    assert config.hidden_size % config.num_attention_heads == 0 or getattr(config, "head_dim", None)


def test_presets_match_the_reference_and_fit_the_model_depth():
    assert set(preset_names()) == set(PSII_REFERENCE) | {"smollm2-135m", "tiny-llama"}
    for name in preset_names():
        preset = model_preset(name)
        psii = preset["psii"]
        depth = preset["architecture"]["num_hidden_layers"] if "architecture" in preset else 30
        layers = psii["layers"]
        assert 1 <= layers["low"] < layers["mid"] < layers["high"] <= depth
        assert psii["vector_scale"] == 2.0
        groups = psii["attribute_groups"]
        assert set(groups) == {"low", "mid", "high"}
        members = [q for group in groups.values() for q in group]
        assert sorted(members) == sorted(DEMOGRAPHIC_ATTRIBUTES)
        if name in PSII_REFERENCE:
            assert (tuple(layers.values()), psii["sigma"]) == PSII_REFERENCE[name]
    assert model_preset("smollm2-135m")["psii"]["layers"] == {"low": 15, "mid": 19, "high": 24}


def test_preset_is_a_copy():
    model_preset("qwen2.5-7b")["psii"]["sigma"] = 99
    assert model_preset("qwen2.5-7b")["psii"]["sigma"] == 0.30


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(PresetError, match="unknown model preset 'gpt-7'.*qwen2.5-7b"):
        load_model(ModelSpec(random_init="gpt-7", n_layers=1))
    with pytest.raises(PresetError, match="no architecture block"):
        loading.architecture_config("smollm2-135m")
    with pytest.raises(ValueError, match="n_layers must be in 1..28"):
        loading.architecture_config("qwen2.5-7b", n_layers=29)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(ModelSpec(name_or_path=str(tmp_path / "no-such-model")))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(ModelSpec(name_or_path=str(tmp_path)))


def test_spec_validation():
    with pytest.raises(ValueError, match="dtype"):
        ModelSpec(dtype="float64")
    with pytest.raises(ValueError, match="device"):
        ModelSpec(device="tpu")
    with pytest.raises(ValueError, match="n_layers only applies"):
        ModelSpec(n_layers=2)
    assert hash(ModelSpec()) == hash(ModelSpec())  # usable as a cache / actor key


def test_decoder_layers_rejects_unknown_architectures():
    with pytest.raises(TypeError, match="model.model.layers"):
        decoder_layers(torch.nn.Linear(2, 2))
