"""Canary secrets (SNMPv3 auth/priv keys, SASL passwords) over the error paths: config
errors, Kafka connection failures and the agent's logs never show them."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest
import structlog
from _net import free_port

from edge_agent import ConfigError, SendError, config_from_dict, load_config
from edge_agent.config import KafkaConfig
from edge_agent.forwarder import KafkaSender

CANARY = "CANARY-s3cr3t-k3y"

V3 = "agent_id: a1\ntargets:\n  - name: r1\n    host: h\n    version: '3'\n"


@pytest.mark.parametrize(
    "text",
    [
        # a validation error elsewhere in a document holding the keys
        V3 + f"    security_name: u\n    auth_key: {CANARY}\n    priv_key: {CANARY}\n    port: x\n",
        # the key in the wrong place or of the wrong type
        V3 + f"    security_name: u\n    auth_key: [{CANARY}]\n",
        V3 + f"    security_name: u\n    auth_key: {CANARY}\n    priv_key: {{k: {CANARY}}}\n",
        # DES refused: the message names the key, not its value
        V3 + f"    security_name: u\n    auth_key: {CANARY}\n    priv_key: {CANARY}\n"
        "    priv_protocol: DES\n",
        # an unknown protocol next to the keys
        V3 + f"    security_name: u\n    auth_key: {CANARY}\n    priv_key: {CANARY}\n"
        f"    auth_protocol: {CANARY}\n",
        # a key too short is named by length only
        V3 + "    security_name: u\n    auth_key: CANARY\n",
        # a YAML error on the key's own line
        V3 + f"    auth_key: {CANARY}: [\n",
        # SASL password with a bad mechanism
        f"agent_id: a1\ntargets: []\nkafka:\n  sasl_mechanism: {CANARY}\n"
        f"  sasl_password: {CANARY}\n",
    ],
)
def test_config_errors_never_contain_snmpv3_keys_or_sasl_passwords(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert "CANARY" not in str(excinfo.value)
    assert "CANARY" not in repr(excinfo.value)
    assert "CANARY" not in caplog.text


def test_des_needs_the_explicit_legacy_flag() -> None:
    target = {
        "name": "r1",
        "host": "h",
        "version": "3",
        "security_name": "u",
        "auth_key": "auth-key-1",
        "priv_key": "priv-key-1",
        "priv_protocol": "DES",
    }
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict({"agent_id": "a", "targets": [target]})
    assert excinfo.value.key == "targets[0].priv_protocol"
    assert "allow_legacy_des" in excinfo.value.reason
    config = config_from_dict({"agent_id": "a", "targets": [target | {"allow_legacy_des": True}]})
    assert config.targets[0].priv_protocol == "DES"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"community": "c"}, "community"),
        ({"security_name": None}, "security_name"),
        ({"auth_key": None}, "auth_key"),
        ({"priv_key": None}, "priv_key"),
        ({"security_level": "authNoPriv"}, "priv_key"),
    ],
)
def test_v3_targets_are_checked_at_load_naming_the_key(change: dict[str, object], key: str) -> None:
    target = {
        "name": "r1",
        "host": "h",
        "version": "3",
        "security_name": "u",
        "auth_key": "auth-key-1",
        "priv_key": "priv-key-1",
    }
    with pytest.raises(ConfigError) as excinfo:
        config_from_dict({"agent_id": "a", "targets": [target | change]})
    assert excinfo.value.key == f"targets[0].{key}"


def test_v3_secrets_print_as_stars() -> None:
    config = config_from_dict(
        {
            "agent_id": "a",
            "targets": [
                {
                    "name": "r1",
                    "host": "h",
                    "version": "3",
                    "security_name": "u",
                    "auth_key": CANARY,
                    "priv_key": CANARY,
                }
            ],
            "kafka": {"sasl_password": CANARY},
        }
    )
    assert CANARY not in repr(config)
    assert CANARY not in str(config)


@pytest.mark.anyio
async def test_a_kafka_connection_failure_never_shows_the_sasl_password() -> None:
    port = free_port()
    config = config_from_dict(
        {
            "agent_id": "a",
            "targets": [],
            "kafka": {
                "bootstrap_servers": f"127.0.0.1:{port}",
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "agent",
                "sasl_password": CANARY,
                "request_timeout_ms": 1000,
            },
        }
    )
    assert isinstance(config.kafka, KafkaConfig)
    sender = KafkaSender(config.kafka)
    with (
        anyio.fail_after(20),
        structlog.testing.capture_logs() as logs,
        pytest.raises(SendError) as excinfo,
    ):
        await sender.start()
    await sender.stop()
    assert "CANARY" not in str(excinfo.value)
    assert "CANARY" not in repr(logs)
