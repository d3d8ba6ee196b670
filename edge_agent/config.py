"""The agent's configuration: frozen msgspec Structs loaded from ``agent.yaml``.

Every key is documented, with its default, in ``agent.yaml.example`` at the
repository root (a test keeps the two in step). Unknown keys fail, values are
validated at load, and every problem raises :class:`ConfigError` naming the
file, the key path (``targets[2].community``) and the reason.

Secrets (SNMP communities, SNMPv3 auth/priv keys, Kafka passwords) are :class:`Secret` values: their
``repr``/``str`` is ``***``, and no error message or log line contains them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec
import yaml

from protocol import TOPIC_USAGE_RAW

from ._exceptions import ConfigError

__all__ = [
    "DEFAULT_MAPPING",
    "AgentConfig",
    "BufferConfig",
    "HttpConfig",
    "KafkaConfig",
    "MappingRule",
    "Secret",
    "TargetConfig",
    "config_from_dict",
    "load_config",
]


class Secret:
    """A string that never shows itself: ``repr`` and ``str`` print ``***``.

    Use :meth:`get_secret_value` at the one place that needs the real value
    (handing it to pysnmp or aiokafka).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
Name = Annotated[str, msgspec.Meta(min_length=1, pattern=r"^[A-Za-z0-9_.:@-]+$")]


AuthProtocol = Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
#: AES is AES-128 (RFC 3826). AES192/AES256 extend the key as net-snmp and most
#: vendors do (draft-blumenthal); AES192C/AES256C as Cisco IOS does (draft-reeder).
PrivProtocol = Literal["AES", "AES192", "AES256", "AES192C", "AES256C", "DES"]


class TargetConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One router to poll: SNMP v1, v2c (``community``) or v3 (USM user and keys)."""

    name: Name
    host: Annotated[str, msgspec.Meta(min_length=1)]
    port: Port = 161
    version: Literal["1", "2c", "3"] = "2c"
    community: Secret | None = None
    timeout: Positive = 2.0
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 1
    max_repetitions: Annotated[int, msgspec.Meta(ge=1, le=200)] = 25
    #: requests to this device in flight at once (the per-device limit)
    max_in_flight: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2
    # -- SNMPv3 (USM) -------------------------------------------------------------
    security_name: str | None = None
    security_level: Literal["authNoPriv", "authPriv"] = "authPriv"
    auth_protocol: AuthProtocol = "SHA"
    auth_key: Secret | None = None
    priv_protocol: PrivProtocol = "AES"
    priv_key: Secret | None = None
    allow_legacy_des: bool = False
    context_name: str = ""
    #: after a reboot the device's counters start again at zero, so the first value
    #: read after it is billed as the traffic since the boot
    counters_restart_at_zero: bool = True

    def __post_init__(self) -> None:
        if self.version in ("1", "2c"):
            if self.community is None:
                raise ValueError(f"key `community`: required for SNMP version {self.version}")
            for key in ("security_name", "auth_key", "priv_key"):
                if getattr(self, key) is not None:
                    raise ValueError(f"key `{key}`: only used with version 3")
            return
        if self.community is not None:
            raise ValueError("key `community`: not used with version 3 (USM has keys)")
        if not self.security_name:
            raise ValueError("key `security_name`: required for SNMP version 3")
        if self.auth_key is None:
            raise ValueError("key `auth_key`: required for SNMP version 3")
        if len(self.auth_key.get_secret_value()) < 8:
            raise ValueError("key `auth_key`: must be at least 8 characters (RFC 3414)")
        if self.security_level == "authPriv":
            if self.priv_key is None:
                raise ValueError("key `priv_key`: required with security_level authPriv")
            if len(self.priv_key.get_secret_value()) < 8:
                raise ValueError("key `priv_key`: must be at least 8 characters (RFC 3414)")
            if self.priv_protocol == "DES" and not self.allow_legacy_des:
                raise ValueError(
                    "key `priv_protocol`: DES is broken; use AES, or set "
                    "allow_legacy_des: true for a device that cannot do better"
                )
        elif self.priv_key is not None:
            raise ValueError("key `priv_key`: only used with security_level authPriv")


class MappingRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Which interfaces belong to which customer resource.

    ``pattern`` is a regular expression searched in the interface's
    ``match_on`` column. It must have a named group ``customer`` and may have
    ``name`` (tells apart two resources of one customer and type). The first
    rule that matches an interface wins; unmatched interfaces are not polled.
    """

    pattern: str
    match_on: Literal["ifAlias", "ifName", "ifDescr"] = "ifAlias"
    resource_type: Annotated[str, msgspec.Meta(min_length=1)] = "bandwidth"
    direction: Literal["in", "out", "both"] = "both"

    def __post_init__(self) -> None:
        try:
            compiled = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        if "customer" not in compiled.groupindex:
            raise ValueError("pattern needs a named group (?P<customer>...)")


#: matches the ifAlias conventions ``CUST:<customer>``, ``CUST:<customer>:<name>`` and
#: ``CUST:<customer> RES:<name>``
DEFAULT_MAPPING: Final = (
    MappingRule(pattern=r"^CUST:(?P<customer>[^:\s]+)(?:(?::|\s+RES:)(?P<name>[^:\s]+))?"),
)


class KafkaConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    bootstrap_servers: Annotated[str, msgspec.Meta(min_length=1)] = "localhost:9092"
    topic: Annotated[str, msgspec.Meta(min_length=1)] = TOPIC_USAGE_RAW
    acks: Literal["all", 1, 0] = "all"
    #: the forwarder hands Kafka a whole buffer batch at once, so batches fill without
    #: waiting; the linger only holds each round's partly filled tail
    linger_ms: NonNegInt = 5
    compression: Literal["zstd", "lz4", "gzip", "none"] = "zstd"
    enable_idempotence: bool = False
    request_timeout_ms: Annotated[int, msgspec.Meta(ge=1000)] = 30000
    max_batch_records: Annotated[int, msgspec.Meta(ge=1)] = 2000
    #: bytes per partition batch of the producer (aiokafka's max_batch_size): it sends one
    #: batch per partition per request, so small batches make a poll burst many round trips
    max_batch_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 262144
    client_id: str | None = None
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None


class BufferConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    directory: Annotated[str, msgspec.Meta(min_length=1)] = "/var/lib/resmon/agent-buffer"
    max_bytes: Annotated[int, msgspec.Meta(ge=4096)] = 256 * 1024 * 1024
    segment_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 16 * 1024 * 1024
    fsync: Literal["always", "interval", "never"] = "interval"
    fsync_interval_ms: Annotated[int, msgspec.Meta(ge=1)] = 1000
    when_full: Literal["block", "drop_oldest"] = "drop_oldest"
    #: space reserved (twice) for the journal of gaps waiting to be written
    gap_reserve_bytes: Annotated[int, msgspec.Meta(ge=4096)] = 1024 * 1024
    #: bound of the file that keeps the records Kafka refused for good
    dead_letter_max_bytes: Annotated[int, msgspec.Meta(ge=0)] = 64 * 1024 * 1024


class HttpConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9464


class AgentConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The whole ``agent.yaml``."""

    agent_id: Name
    targets: list[TargetConfig]
    interval: Positive = 60.0
    jitter: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    max_concurrency: Annotated[int, msgspec.Meta(ge=1)] = 64
    poll_deadline: Positive | None = None
    rediscover_interval: Positive = 3600.0
    backoff_after_failures: Annotated[int, msgspec.Meta(ge=1)] = 3
    backoff_max: Positive = 900.0
    tenant_id: str | None = None
    mapping: tuple[MappingRule, ...] = DEFAULT_MAPPING
    kafka: KafkaConfig = msgspec.field(default_factory=KafkaConfig)
    buffer: BufferConfig = msgspec.field(default_factory=BufferConfig)
    http: HttpConfig = msgspec.field(default_factory=HttpConfig)

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for target in self.targets:
            if target.name in seen:
                raise ValueError(f"target name {target.name!r} is used twice")
            seen.add(target.name)

    @property
    def effective_poll_deadline(self) -> float:
        """Seconds one target's poll may take: ``poll_deadline`` or 80% of the interval."""
        return self.poll_deadline if self.poll_deadline is not None else self.interval * 0.8


# -- loading -------------------------------------------------------------------------

_SECRET_KEYS: Final = frozenset({"community", "auth_key", "priv_key", "sasl_password"})
_PATH_RE: Final = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN_RE: Final = re.compile(r"^Object contains unknown field `(?P<field>[^`]*)`$")
_MISSING_RE: Final = re.compile(r"^Object missing required field `(?P<field>[^`]*)`$")
#: ``__post_init__`` checks name the offending key as "key `name`: reason"
_KEY_RE: Final = re.compile(r"^key `(?P<field>[^`]*)`: (?P<reason>.*)$", re.S)


def _dec_hook(tp: type, obj: Any) -> Any:
    if tp is Secret:
        if isinstance(obj, str) and obj:
            return Secret(obj)
        raise ValueError("Expected a non-empty string")
    raise NotImplementedError(f"cannot decode {tp!r}")


def _secret_values(obj: Any) -> list[str]:
    """Every string stored under a secret key anywhere in the raw document."""
    found: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in _SECRET_KEYS and isinstance(value, str | int | float) and str(value):
                found.append(str(value))
            else:
                found.extend(_secret_values(value))
    elif isinstance(obj, list):
        for item in obj:
            found.extend(_secret_values(item))
    return found


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:  # shorter ones would mangle ordinary words
            text = text.replace(secret, "***")
    return text


def _validation_error(exc: msgspec.ValidationError, file: str, raw: Any) -> ConfigError:
    match = _PATH_RE.match(str(exc))
    assert match is not None
    msg, path = match["msg"], (match["path"] or "").lstrip(".")
    for pattern, reason in ((_UNKNOWN_RE, "unknown key"), (_MISSING_RE, "required key missing")):
        field = pattern.match(msg)
        if field:
            path = f"{path}.{field['field']}" if path else field["field"]
            msg = reason
            break
    else:
        keyed = _KEY_RE.match(msg)
        if keyed:
            path = f"{path}.{keyed['field']}" if path else keyed["field"]
            msg = keyed["reason"]
    return ConfigError(_scrub(msg, _secret_values(raw)), file=file, key=path or None)


def config_from_dict(data: Any, *, file: str = "<config>") -> AgentConfig:
    """Validate a parsed document (a dict as YAML would give) into an :class:`AgentConfig`.

    Handy for building a config in code, e.g. in tests: ``config_from_dict({"agent_id":
    "a1", "targets": [...], "buffer": {"directory": str(tmp_path)}})``.
    """
    if not isinstance(data, dict):
        got = "an empty file" if data is None else type(data).__name__
        raise ConfigError(f"expected a mapping of keys at the top level, got {got}", file=file)
    try:
        return msgspec.convert(data, AgentConfig, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise _validation_error(exc, file, data) from None


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate ``agent.yaml``; raise :class:`ConfigError` on any problem."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=file) from None
    except UnicodeDecodeError:
        raise ConfigError("the file is not UTF-8 text", file=file) from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        # The marks hold line/column; the problem text never quotes the document,
        # so a secret on the offending line cannot leak into the message.
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"invalid YAML: {problem}", file=file, key=where) from None
    except yaml.YAMLError:
        raise ConfigError("invalid YAML", file=file) from None
    return config_from_dict(data, file=file)
