"""The :class:`SnmpClient` over pysnmp 7 (asyncio): SNMP v1, v2c and v3 (USM).

One ``SnmpEngine`` per instance (the app creates one per process), numeric OIDs,
no MIB loading. v2c and v3 walk with GETBULK (``max_repetitions``); v1 has no
GETBULK and no Counter64, so it walks with GETNEXT and reads the 32-bit
counters. pysnmp's values are converted to :data:`~edge_agent.snmp.client.Value`
tuples and its error indications to the :mod:`edge_agent._exceptions` tree;
no message carries a community or a key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final

from .._exceptions import (
    SnmpAuthError,
    SnmpError,
    SnmpResponseError,
    SnmpTimeout,
)
from ..config import TargetConfig
from .client import CounterClient, Oid, Value

__all__ = ["PysnmpClient"]

#: pysnmp value class name -> SMI type name
_TYPES: Final = {
    "Integer": "Integer",
    "Integer32": "Integer",
    "OctetString": "OctetString",
    "Null": "Null",
    "ObjectIdentifier": "ObjectIdentifier",
    "ObjectName": "ObjectIdentifier",
    "IpAddress": "IpAddress",
    "Counter32": "Counter32",
    "Gauge32": "Gauge32",
    "Unsigned32": "Gauge32",
    "TimeTicks": "TimeTicks",
    "Opaque": "Opaque",
    "Counter64": "Counter64",
    "NoSuchObject": "NoSuchObject",
    "NoSuchInstance": "NoSuchInstance",
    "EndOfMibView": "EndOfMibView",
}

#: error indications that mean "your credentials are wrong" (RFC 3414 reports)
_AUTH_FAILURES: Final = frozenset(
    {
        "UnknownUserName",
        "UnknownSecurityName",
        "WrongDigest",
        "WrongDigests",
        "DecryptionError",
        "UnsupportedSecurityLevel",
        "UnsupportedSecLevel",
        "AuthenticationError",
        "AuthenticationFailure",
    }
)

_NO_SUCH_NAME: Final = 2


def _value(obj: Any) -> Value:
    name = _TYPES.get(type(obj).__name__, type(obj).__name__)
    if name == "OctetString":
        return name, bytes(obj.asOctets())
    if name in ("Integer", "Counter32", "Gauge32", "TimeTicks", "Counter64"):
        try:
            return name, int(obj)
        except (TypeError, ValueError):
            return name, None
    return name, None


class PysnmpClient(CounterClient):
    """:class:`SnmpClient` over pysnmp 7.1 asyncio. One engine per instance.

    Create one per process (the app does) and ``await aclose()`` at the end.
    """

    def __init__(self) -> None:
        super().__init__()
        from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

        self._engine = SnmpEngine()
        self._transports: dict[str, Any] = {}

    async def aclose(self) -> None:
        self._engine.close_dispatcher()

    # -- plumbing ---------------------------------------------------------------

    async def _transport(self, target: TargetConfig) -> Any:
        from pysnmp.error import PySnmpError
        from pysnmp.hlapi.v3arch.asyncio import UdpTransportTarget

        key = f"{target.host}:{target.port}:{target.timeout}:{target.retries}"
        transport = self._transports.get(key)
        if transport is None:
            try:
                transport = await UdpTransportTarget.create(
                    (target.host, target.port), timeout=target.timeout, retries=target.retries
                )
            except PySnmpError as exc:
                raise SnmpError(
                    f"cannot resolve {target.host}: {exc}", target=target.name
                ) from None
            self._transports[key] = transport
        return transport

    def _auth(self, target: TargetConfig) -> Any:
        from pysnmp.hlapi.v3arch import asyncio as hl

        if target.version == "3":
            return _usm_user(target)
        # pysnmp maps an answer's community back to the *first* matching entry of
        # its community table, so equal communities must share one entry (one
        # index); the index is a hash, so the secret itself is never a table key.
        assert target.community is not None
        secret = target.community.get_secret_value()
        model = 0 if target.version == "1" else 1
        digest = hashlib.blake2b(secret.encode(), digest_size=8).hexdigest()
        return hl.CommunityData(f"resmon-v{model}-{digest}", secret, mpModel=model)

    def _context(self, target: TargetConfig) -> Any:
        from pysnmp.hlapi.v3arch.asyncio import ContextData

        if target.version == "3" and target.context_name:
            return ContextData(contextName=target.context_name)
        return ContextData()

    def _check(
        self, target: TargetConfig, result: tuple[Any, Any, Any, Any]
    ) -> Sequence[tuple[Any, Any]]:
        error_indication, error_status, error_index, var_binds = result
        if error_indication:
            name = type(error_indication).__name__
            if name == "RequestTimedOut":
                raise SnmpTimeout(
                    f"no answer from {target.host}:{target.port} within "
                    f"{target.timeout}s x {target.retries + 1} tries",
                    target=target.name,
                )
            if name in _AUTH_FAILURES:
                raise SnmpAuthError(f"SNMPv3 authentication failed: {name}", target=target.name)
            raise SnmpError(f"request failed: {name}", target=target.name)
        if error_status and int(error_status) != 0:
            raise SnmpResponseError(
                f"router answered {error_status.prettyPrint()} at varbind {int(error_index)}",
                target=target.name,
                status=int(error_status),
                index=int(error_index),
            )
        return var_binds  # type: ignore[no-any-return]

    async def _request(self, target: TargetConfig, command: str, *args: Any) -> Sequence[Any]:
        from pysnmp.error import PySnmpError
        from pysnmp.hlapi.v3arch import asyncio as hl

        transport = await self._transport(target)
        try:
            result = await getattr(hl, command)(
                self._engine,
                self._auth(target),
                transport,
                self._context(target),
                *args,
                lookupMib=False,
            )
        except PySnmpError as exc:
            raise SnmpError(f"request failed: {type(exc).__name__}", target=target.name) from None
        return self._check(target, result)

    async def _get_chunk(self, target: TargetConfig, oids: Sequence[Oid]) -> dict[Oid, Value]:
        from pysnmp.hlapi.v3arch.asyncio import ObjectIdentity, ObjectType

        wanted = list(oids)
        while wanted:
            try:
                var_binds = await self._request(
                    target, "get_cmd", *(ObjectType(ObjectIdentity(oid)) for oid in wanted)
                )
            except SnmpResponseError as exc:
                # SNMPv1 answers a GET with one absent OID as noSuchName for the
                # whole PDU: leave that OID out (it is missing) and ask again
                if exc.status != _NO_SUCH_NAME or not 1 <= exc.index <= len(wanted):
                    raise
                del wanted[exc.index - 1]
                continue
            return {tuple(oid): _value(value) for oid, value in var_binds}
        return {}

    async def _walk_step(self, target: TargetConfig, cursor: Oid) -> list[tuple[Oid, Value]]:
        """The values after ``cursor``: GETBULK (v2c, v3) or GETNEXT (v1)."""
        from pysnmp.hlapi.v3arch.asyncio import ObjectIdentity, ObjectType

        start = ObjectType(ObjectIdentity(cursor))
        try:
            if target.version == "1":
                var_binds = await self._request(target, "next_cmd", start)
            else:
                var_binds = await self._request(
                    target, "bulk_cmd", 0, target.max_repetitions, start
                )
        except SnmpResponseError as exc:
            if exc.status == _NO_SUCH_NAME:  # v1: GETNEXT past the end of the MIB
                return []
            raise
        return [(tuple(oid), _value(value)) for oid, value in var_binds]


def _usm_user(target: TargetConfig) -> Any:
    from pysnmp.hlapi.v3arch import asyncio as hl

    auth = {
        "MD5": hl.usmHMACMD5AuthProtocol,
        "SHA": hl.usmHMACSHAAuthProtocol,
        "SHA224": hl.usmHMAC128SHA224AuthProtocol,
        "SHA256": hl.usmHMAC192SHA256AuthProtocol,
        "SHA384": hl.usmHMAC256SHA384AuthProtocol,
        "SHA512": hl.usmHMAC384SHA512AuthProtocol,
    }[target.auth_protocol]
    assert target.security_name is not None
    assert target.auth_key is not None
    if target.security_level == "authNoPriv":
        return hl.UsmUserData(
            target.security_name,
            authKey=target.auth_key.get_secret_value(),
            authProtocol=auth,
            privProtocol=hl.usmNoPrivProtocol,
        )
    priv = {
        "AES": hl.usmAesCfb128Protocol,
        "AES192": hl.usmAesBlumenthalCfb192Protocol,
        "AES256": hl.usmAesBlumenthalCfb256Protocol,
        "AES192C": hl.usmAesCfb192Protocol,
        "AES256C": hl.usmAesCfb256Protocol,
        "DES": hl.usmDESPrivProtocol,
    }[target.priv_protocol]
    assert target.priv_key is not None
    return hl.UsmUserData(
        target.security_name,
        authKey=target.auth_key.get_secret_value(),
        privKey=target.priv_key.get_secret_value(),
        authProtocol=auth,
        privProtocol=priv,
    )
