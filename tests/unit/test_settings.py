"""shared/settings.py: sources, precedence, validation and derived values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.settings import Settings, documented_options

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No RAGMESH_* variables from the outside and no stray .env: an empty cwd."""
    for name in list(os.environ):
        if name.startswith("RAGMESH_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "ragmesh.yaml"
    path.write_text(text, encoding="utf-8")
    monkeypatch.setenv("RAGMESH_CONFIG", str(path))
    return path


def test_defaults() -> None:
    s = Settings()
    assert s.embedding_model == "all-MiniLM-L6-v2"
    assert s.vectorstore_collection == "handbook"
    assert (s.ingest_chunk_size, s.ingest_chunk_overlap) == (300, 120)
    assert (s.retrieval_top_k, s.retrieval_score_threshold) == (6, 0.40)
    assert s.api_keys == []


def test_keyword_arguments_set_options() -> None:
    s = Settings(api_port=9000, generator_model="tiny", retrieval_top_k=7)
    assert (s.api_port, s.generator_model, s.retrieval_top_k) == (9000, "tiny", 7)


def test_env_vars_with_prefix_set_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGMESH_API_PORT", "9191")
    monkeypatch.setenv("RAGMESH_LOG_JSON", "false")
    monkeypatch.setenv("RAGMESH_EMBEDDING_MODEL", "from-env")
    s = Settings()
    assert (s.api_port, s.log_json, s.embedding_model) == (9191, False, "from-env")


def test_keyword_arguments_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGMESH_API_PORT", "9191")
    assert Settings(api_port=9000).api_port == 9000


def test_api_keys_are_comma_separated_and_blank_ones_dropped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGMESH_API_KEYS", "a, b,,c")
    keys = [k.get_secret_value() for k in Settings().api_keys]
    assert keys == ["a", "b", "c"]


def test_api_keys_are_secret_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGMESH_API_KEYS", "topsecretkey")
    assert "topsecretkey" not in repr(Settings())


def test_dotenv_file_in_cwd_is_read(clean_env: Path) -> None:
    (clean_env / ".env").write_text("RAGMESH_EMBEDDING_MODEL=from-dotenv\n"
                                    "RAGMESH_API_PORT=8555\n", encoding="utf-8")
    s = Settings()
    assert (s.embedding_model, s.api_port) == ("from-dotenv", 8555)


def test_env_beats_dotenv(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".env").write_text("RAGMESH_EMBEDDING_MODEL=from-dotenv\n", encoding="utf-8")
    monkeypatch.setenv("RAGMESH_EMBEDDING_MODEL", "from-env")
    assert Settings().embedding_model == "from-env"


YAML = """
embedding: {model: yaml-model, batch_size: 8}
vectorstore: {uri: http://milvus:19530, collection: hr_docs}
generator: {engine_url: http://gpu:9000/v1, model: yaml-llm}
log_level: DEBUG
"""


def test_yaml_sections_set_options(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_yaml(clean_env, monkeypatch, YAML)
    s = Settings()
    assert (s.embedding_model, s.embedding_batch_size) == ("yaml-model", 8)
    assert (s.vectorstore_uri, s.vectorstore_collection) == ("http://milvus:19530", "hr_docs")
    assert (s.generator_engine_url, s.generator_model) == ("http://gpu:9000/v1", "yaml-llm")
    assert s.log_level == "DEBUG"
    assert s.milvus_uri == "http://milvus:19530"


def test_env_beats_yaml(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_yaml(clean_env, monkeypatch, YAML)
    monkeypatch.setenv("RAGMESH_EMBEDDING_MODEL", "from-env")
    s = Settings()
    assert s.embedding_model == "from-env"
    assert s.generator_model == "yaml-llm"


def test_dotenv_beats_yaml(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_yaml(clean_env, monkeypatch, YAML)
    (clean_env / ".env").write_text("RAGMESH_GENERATOR_MODEL=from-dotenv\n", encoding="utf-8")
    assert Settings().generator_model == "from-dotenv"


def test_unknown_yaml_option_raises_a_clear_error(clean_env: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    write_yaml(clean_env, monkeypatch, "embedding: {modle: typo}\n")
    with pytest.raises(ValueError, match="unknown options in RAGMESH_CONFIG: embedding_modle"):
        Settings()


def test_yaml_top_level_must_be_a_mapping(clean_env: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    write_yaml(clean_env, monkeypatch, "- just\n- a list\n")
    with pytest.raises(ValueError, match="mapping of sections"):
        Settings()


def test_empty_yaml_file_is_fine(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_yaml(clean_env, monkeypatch, "")
    assert Settings().embedding_model == "all-MiniLM-L6-v2"


@pytest.mark.parametrize(("size", "overlap"), [(800, 800), (200, 300), (100, 120)])
def test_overlap_not_smaller_than_chunk_size_is_rejected(size: int, overlap: int) -> None:
    with pytest.raises(ValidationError, match="ingest_chunk_overlap must be smaller"):
        Settings(ingest_chunk_size=size, ingest_chunk_overlap=overlap)


def test_default_overlap_is_checked_against_a_smaller_chunk_size() -> None:
    with pytest.raises(ValidationError, match="ingest_chunk_overlap"):
        Settings(ingest_chunk_size=100)  # default overlap 120


def test_overlap_below_chunk_size_is_accepted() -> None:
    s = Settings(ingest_chunk_size=300, ingest_chunk_overlap=299)
    assert s.ingest_chunk_overlap == 299


@pytest.mark.parametrize(("field", "value"), [("api_port", 70000), ("retrieval_top_k", 0),
                                              ("vectorstore_collection", "bad-name"),
                                              ("generator_temperature", 3.0)])
def test_out_of_range_values_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(**{field: value})


def test_milvus_uri_defaults_to_a_file_under_state_dir(clean_env: Path) -> None:
    s = Settings(state_dir=clean_env / "state")
    assert s.milvus_uri == str(clean_env / "state" / "milvus.db")
    assert Settings().milvus_uri == str(Path(".ragmesh") / "milvus.db")


def test_several_engine_urls_each_get_lanes_for_their_cap() -> None:
    s = Settings(generator_engine_url="http://a:8000/v1/, http://b:8000/v1",
                 generator_max_concurrency=3)
    assert s.engine_urls == ["http://a:8000/v1", "http://b:8000/v1"]
    assert s.lanes == 6
    assert Settings(generator_lanes=2).lanes == 2


def test_engine_mode_auto_is_remote_once_a_url_is_given() -> None:
    assert Settings().engine_is_local
    assert not Settings(generator_engine_url="http://vllm:8000/v1").engine_is_local
    local = Settings(generator_engine_url="http://x/v1", generator_engine_mode="local")
    assert local.engine_is_local
    assert not Settings(generator_engine_mode="remote").engine_is_local


def test_cli_api_url_defaults_to_host_and_port() -> None:
    assert Settings(api_host="0.0.0.0", api_port=81).cli_api_url == "http://0.0.0.0:81"
    assert Settings(api_url="http://api/").cli_api_url == "http://api"


def test_documented_options_list_every_field_with_a_description() -> None:
    rows = documented_options()
    assert [name for name, _, _ in rows] == [f"RAGMESH_{f.upper()}" for f in Settings.model_fields]
    undocumented = [name for name, _, description in rows if not description.strip()]
    assert undocumented == []


def test_documented_options_hide_secret_defaults() -> None:
    defaults = {name: default for name, default, _ in documented_options()}
    assert defaults["RAGMESH_REDIS_URL"] == "'(secret)'"
    assert "6379" not in defaults["RAGMESH_REDIS_URL"]
    assert defaults["RAGMESH_API_PORT"] == "8080"
