"""agent.yaml: validated at load, errors name file, key and reason, secrets never show."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from edge_agent import AgentConfig, ConfigError, Secret, config_from_dict, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "agent.yaml.example"
CANARY = "CANARY-s3cr3t"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path


MINIMAL = """\
agent_id: a1
targets:
  - name: r1
    host: 127.0.0.1
    community: public
"""


def test_a_minimal_config_gets_the_documented_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.interval == 60.0
    assert config.targets[0].port == 161
    assert config.targets[0].version == "2c"
    assert config.kafka.topic == "resource.usage.raw"
    assert config.kafka.acks == "all"
    assert config.kafka.enable_idempotence is False
    assert config.mapping[0].resource_type == "bandwidth"
    assert config.buffer.when_full == "drop_oldest"


def test_an_unknown_key_names_the_file_and_the_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "    comunity: typo\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert excinfo.value.key == "targets[0].comunity"
    assert str(path) in str(excinfo.value)
    assert "unknown key" in str(excinfo.value)


def test_a_bad_type_names_the_key_path_and_the_reason(tmp_path: Path) -> None:
    text = MINIMAL + "  - name: r2\n    host: h\n    community: c\n  - name: r3\n    host: h\n"
    text += "    community: c\n    port: not-a-port\n"
    with pytest.raises(ConfigError) as excinfo:
        load_config(write(tmp_path, text))
    assert excinfo.value.key == "targets[2].port"
    assert "Expected `int`, got `str`" in excinfo.value.reason


def test_a_missing_required_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(write(tmp_path, "agent_id: a1\ntargets:\n  - community: c\n    host: h\n"))
    assert excinfo.value.key == "targets[0].name"
    assert excinfo.value.reason == "required key missing"


def test_a_v2c_target_without_a_community_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(write(tmp_path, "agent_id: a1\ntargets:\n  - name: r1\n    host: h\n"))
    assert excinfo.value.key == "targets[0].community"
    assert excinfo.value.reason == "required for SNMP version 2c"


def test_a_yaml_syntax_error_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "agent_id: a1\ntargets: [\n  name: : :\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert str(path) in str(excinfo.value)
    assert excinfo.value.key is not None
    assert excinfo.value.key.startswith("line ")
    assert "invalid YAML" in excinfo.value.reason


def test_a_mapping_rule_without_a_customer_group_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"mapping\[0\].*customer"):
        config_from_dict(
            {
                "agent_id": "a",
                "targets": [{"name": "r", "host": "h", "community": "c"}],
                "mapping": [{"pattern": "^CUST:(?P<who>.*)"}],
            }
        )


def test_duplicate_target_names_are_refused() -> None:
    target = {"name": "r", "host": "h", "community": "c"}
    with pytest.raises(ConfigError, match="used twice"):
        config_from_dict({"agent_id": "a", "targets": [target, target]})


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_secrets_print_as_stars() -> None:
    secret = Secret(CANARY)
    assert CANARY not in repr(secret)
    assert CANARY not in str(secret)
    assert CANARY not in f"{secret}"
    config = config_from_dict(
        {"agent_id": "a", "targets": [{"name": "r", "host": "h", "community": CANARY}]}
    )
    assert CANARY not in repr(config)
    assert config.targets[0].community.get_secret_value() == CANARY


@pytest.mark.parametrize(
    "text",
    [
        # a YAML error on the secret's own line
        f"agent_id: a1\ntargets:\n  - name: r1\n    community: {CANARY}: [\n",
        f'agent_id: a1\ntargets:\n  - name: r1\n    community: "{CANARY}\n',
        # a validation error elsewhere in a document holding the secret
        f"agent_id: a1\ntargets:\n  - name: r1\n    host: h\n    community: {CANARY}\n"
        "    port: x\n",
        # the secret in the wrong place
        f"agent_id: a1\ntargets:\n  - name: r1\n    host: h\n    community: [{CANARY}]\n",
        f"agent_id: a1\ntargets: []\nkafka:\n  compression: {CANARY}\n  sasl_password: {CANARY}\n",
    ],
)
def test_config_errors_never_contain_the_community(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as excinfo:
        load_config(write(tmp_path, text))
    assert CANARY not in str(excinfo.value)
    assert CANARY not in repr(excinfo.value)
    assert CANARY not in caplog.text


# -- agent.yaml.example keeps docs and structs in step ----------------------------------


def test_the_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert isinstance(config, AgentConfig)


def _missing_fields(struct_type: type[msgspec.Struct], doc: Any, path: str) -> list[str]:
    missing = []
    for field in msgspec.structs.fields(struct_type):
        key = f"{path}{field.encode_name}"
        if not isinstance(doc, dict) or field.encode_name not in doc:
            missing.append(key)
            continue
        inner = doc[field.encode_name]
        nested = _struct_in(field.type)
        if nested is not None:
            if isinstance(inner, list):
                inner = inner[0] if inner else None
                key += "[0]"
            missing += _missing_fields(nested, inner, key + ".")
    return missing


def _struct_in(tp: Any) -> type[msgspec.Struct] | None:
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp
    for arg in getattr(tp, "__args__", ()):
        found = _struct_in(arg)
        if found is not None:
            return found
    return None


def test_every_config_key_is_documented_in_the_example() -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    assert _missing_fields(AgentConfig, doc, "") == []


def test_the_example_documents_the_defaults() -> None:
    """Keys the example sets to something other than the default are only the required
    ones and the demo targets: the example is the single source of documented defaults."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    minimal = config_from_dict({"agent_id": doc["agent_id"], "targets": doc["targets"]})
    assert load_config(EXAMPLE) == minimal
