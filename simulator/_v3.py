"""SNMPv3 messages (RFC 3412) with the User-based Security Model (RFC 3414).

One router per socket answers v3: it is the authoritative engine, with its
own engine ID, boots (one per simulated boot) and time (seconds since that
boot). Processing follows RFC 3414 3.2, and what cannot be answered gets the
Report PDU a real agent sends (when the request is reportable):

=========================== ===================================== ==============
condition                   report varbind                        report level
=========================== ===================================== ==============
engine ID empty or not ours usmStatsUnknownEngineIDs.0 (discovery) noAuthNoPriv
user unknown                usmStatsUnknownUserNames.0             noAuthNoPriv
level above the user's      usmStatsUnsupportedSecLevels.0         noAuthNoPriv
digest does not match       usmStatsWrongDigests.0                 noAuthNoPriv
boots/time outside window   usmStatsNotInTimeWindows.0             authNoPriv
cannot decrypt              usmStatsDecryptionErrors.0             noAuthNoPriv
=========================== ===================================== ==============

A request below the user's level (e.g. noAuthNoPriv for an authPriv user)
gets a Response with error-status authorizationError, as VACM would answer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from snmpber import (
    COUNTER32,
    INTEGER,
    OBJECT_IDENTIFIER,
    OCTET_STRING,
    SEQUENCE,
    decode_signed,
    encode_signed,
    encode_tlv,
    encode_unsigned,
    read_tlv,
)

from ._exceptions import BerError
from ._pdu import ANSWERED, answer, parse_pdu
from ._router import SimRouter
from ._usm import UsmUser, aes_decrypt, aes_encrypt

__all__ = ["REPORT_OIDS", "V3Stats", "handle_v3"]

_REPORT: Final = 0xA8
_RESPONSE: Final = 0xA2
_AUTHORIZATION_ERROR: Final = 16
_TIME_WINDOW_S: Final = 150
_MAX_SIZE: Final = 65507
#: report name -> OID content octets of usmStats<name>.0 (1.3.6.1.6.3.15.1.1.N.0)
REPORT_OIDS: Final[dict[str, bytes]] = {
    name: bytes((0x2B, 6, 1, 6, 3, 15, 1, 1, n, 0))
    for n, name in enumerate(
        (
            "unsupported_sec_levels",
            "not_in_time_windows",
            "unknown_user_names",
            "unknown_engine_ids",
            "wrong_digests",
            "decryption_errors",
        ),
        start=1,
    )
}


class V3Stats:
    """The usmStats counters of one socket (plain integers)."""

    __slots__ = (
        "decryption_errors",
        "not_in_time_windows",
        "unknown_engine_ids",
        "unknown_user_names",
        "unsupported_sec_levels",
        "wrong_digests",
    )

    def __init__(self) -> None:
        self.unsupported_sec_levels = 0
        self.not_in_time_windows = 0
        self.unknown_user_names = 0
        self.unknown_engine_ids = 0
        self.wrong_digests = 0
        self.decryption_errors = 0


class _Salt:
    value = int.from_bytes(os.urandom(8), "big")

    @classmethod
    def next(cls) -> bytes:
        cls.value = (cls.value + 1) & 0xFFFF_FFFF_FFFF_FFFF
        return cls.value.to_bytes(8, "big")


def handle_v3(
    router: SimRouter,
    users: Mapping[bytes, UsmUser],
    stats: V3Stats,
    data: bytes,
    pos: int,
    max_response_bytes: int,
) -> bytes | None:
    """The reply to a v3 message whose version field ends at ``pos``, or ``None``."""
    end = len(data)
    tag, g, pos = read_tlv(data, pos, end)
    if tag != SEQUENCE:
        raise BerError("bad msgGlobalData")
    tag, s, g = read_tlv(data, g, pos)
    msg_id = decode_signed(data, s, g)
    tag, s, g = read_tlv(data, g, pos)
    max_size = decode_signed(data, s, g)
    tag, s, g = read_tlv(data, g, pos)
    if tag != OCTET_STRING or g - s != 1:
        raise BerError("bad msgFlags")
    flags = data[s]
    tag, s, g = read_tlv(data, g, pos)
    if tag != INTEGER or decode_signed(data, s, g) != 3 or g != pos:
        raise BerError("not the user-based security model")
    level = flags & 3
    if level == 2:
        raise BerError("privacy without authentication")
    reportable = bool(flags & 4)
    tag, sp, sp_end = read_tlv(data, pos, end)
    if tag != OCTET_STRING:
        raise BerError("bad msgSecurityParameters")
    tag, p, sp_in = read_tlv(data, sp, sp_end)
    if tag != SEQUENCE or sp_in != sp_end:
        raise BerError("bad UsmSecurityParameters")
    fields: list[tuple[int, int]] = []
    for expected in (OCTET_STRING, INTEGER, INTEGER, OCTET_STRING, OCTET_STRING, OCTET_STRING):
        tag, s, p = read_tlv(data, p, sp_end)
        if tag != expected:
            raise BerError("bad UsmSecurityParameters field")
        fields.append((s, p))
    engine_id = data[fields[0][0] : fields[0][1]]
    boots = decode_signed(data, *fields[1])
    etime = decode_signed(data, *fields[2])
    user_name = data[fields[3][0] : fields[3][1]]
    auth_s, auth_e = fields[4]
    salt = data[fields[5][0] : fields[5][1]]
    tag, body, body_end = read_tlv(data, sp_end, end)
    if body_end != end or tag not in (SEQUENCE, OCTET_STRING):
        raise BerError("bad msgData")
    budget_cap = min(max_size, max_response_bytes)

    def report(
        name: str, user: UsmUser | None = None, request_id: bytes = b"\x02\x01\x00"
    ) -> bytes | None:
        count = getattr(stats, name) + 1
        setattr(stats, name, count)
        if not reportable:
            return None
        varbind = encode_tlv(
            SEQUENCE,
            encode_tlv(OBJECT_IDENTIFIER, REPORT_OIDS[name]) + encode_unsigned(COUNTER32, count),
        )
        return _message(
            router, user, 1 if user else 0, msg_id, b"", _REPORT, request_id, 0, 0, varbind
        )

    def plain_request_id() -> bytes:
        if tag != SEQUENCE:
            return b"\x02\x01\x00"
        try:
            _, pdu_pos = _scoped(data, body, body_end)
            return parse_pdu(data, pdu_pos, body_end).request_id_tlv
        except BerError:
            return b"\x02\x01\x00"

    if engine_id != router.engine_id:
        return report("unknown_engine_ids", request_id=plain_request_id())
    user = users.get(user_name)
    if user is None:
        return report("unknown_user_names", request_id=plain_request_id())
    if level > user.level:
        return report("unsupported_sec_levels", request_id=plain_request_id())
    now = router.clock()
    if level & 1:
        if auth_e - auth_s != user.digest_size:
            return report("wrong_digests")
        zeroed = data[:auth_s] + bytes(user.digest_size) + data[auth_e:]
        if user.digest(engine_id, zeroed) != data[auth_s:auth_e]:
            return report("wrong_digests")
        if (
            boots != router.engine_boots(now)
            or abs(etime - router.engine_time(now)) > _TIME_WINDOW_S
        ):
            return report("not_in_time_windows", user)
    if level & 2:
        if tag != OCTET_STRING or len(salt) != 8:
            return report("decryption_errors")
        scoped = aes_decrypt(user.keys(engine_id)[1], boots, etime, salt, data[body:body_end])
        try:
            tag2, s_start, s_end = read_tlv(scoped, 0, len(scoped))
            if tag2 != SEQUENCE:
                raise BerError("not a ScopedPDU")
            # CFB has no padding, but some encoders pad: ignore bytes after the SEQUENCE
            scoped = scoped[:s_end]
            ctx_name, pdu_pos = _scoped(scoped, s_start, s_end)
            pdu = parse_pdu(scoped, pdu_pos, s_end)
        except BerError:
            return report("decryption_errors")
    else:
        if tag != SEQUENCE:
            raise BerError("an unencrypted msgData is a ScopedPDU")
        ctx_name, pdu_pos = _scoped(data, body, body_end)
        pdu = parse_pdu(data, pdu_pos, body_end)
    if pdu.tag not in ANSWERED:
        return None
    if level < user.level:
        status, index, vbl = _AUTHORIZATION_ERROR, 0, pdu.vbl
    else:
        overhead = 120 + len(engine_id) + len(user_name) + user.digest_size + len(ctx_name)
        status, index, vbl = answer(router, pdu, budget_cap - overhead)
    return _message(
        router, user, level, msg_id, ctx_name, _RESPONSE, pdu.request_id_tlv, status, index, vbl
    )


def _scoped(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    """(contextName, position of the PDU) of the ScopedPDU content at ``pos``."""
    tag, s, pos = read_tlv(data, pos, end)
    if tag != OCTET_STRING:
        raise BerError("bad contextEngineID")
    tag, s, pos = read_tlv(data, pos, end)
    if tag != OCTET_STRING:
        raise BerError("bad contextName")
    return data[s:pos], pos


def _message(
    router: SimRouter,
    user: UsmUser | None,
    level: int,
    msg_id: int,
    ctx_name: bytes,
    pdu_tag: int,
    request_id_tlv: bytes,
    status: int,
    index: int,
    vbl: bytes,
) -> bytes:
    engine = router.engine_id
    now = router.clock()
    boots, etime = router.engine_boots(now), router.engine_time(now)
    pdu_body = (
        request_id_tlv
        + encode_signed(INTEGER, status)
        + encode_signed(INTEGER, index)
        + encode_tlv(SEQUENCE, vbl)
    )
    scoped = encode_tlv(
        SEQUENCE,
        encode_tlv(OCTET_STRING, engine)
        + encode_tlv(OCTET_STRING, ctx_name)
        + encode_tlv(pdu_tag, pdu_body),
    )
    salt = b""
    if level & 2 and user is not None:
        salt = _Salt.next()
        scoped = encode_tlv(
            OCTET_STRING, aes_encrypt(user.keys(engine)[1], boots, etime, salt, scoped)
        )
    digest_size = user.digest_size if level & 1 and user is not None else 0
    sec_prefix = (
        encode_tlv(OCTET_STRING, engine)
        + encode_signed(INTEGER, boots)
        + encode_signed(INTEGER, etime)
        + encode_tlv(OCTET_STRING, user.name if user is not None else b"")
    )
    sec_content = (
        sec_prefix + encode_tlv(OCTET_STRING, bytes(digest_size)) + encode_tlv(OCTET_STRING, salt)
    )
    sec_seq = encode_tlv(SEQUENCE, sec_content)
    header = encode_signed(INTEGER, 3) + encode_tlv(
        SEQUENCE,
        encode_signed(INTEGER, msg_id)
        + encode_signed(INTEGER, _MAX_SIZE)
        + encode_tlv(OCTET_STRING, bytes((level,)))
        + encode_signed(INTEGER, 3),
    )
    sec_oct = encode_tlv(OCTET_STRING, sec_seq)
    body = header + sec_oct + scoped
    msg = encode_tlv(SEQUENCE, body)
    if digest_size and user is not None:
        offset = (
            len(msg)
            - len(body)
            + len(header)
            + (len(sec_oct) - len(sec_seq))
            + (len(sec_seq) - len(sec_content))
            + len(sec_prefix)
            + 2
        )
        digest = user.digest(engine, msg)
        msg = msg[:offset] + digest + msg[offset + digest_size :]
    return msg
