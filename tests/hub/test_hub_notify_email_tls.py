"""Email over STARTTLS and implicit TLS with SMTP AUTH, against aiosmtpd with a test CA."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from _net import free_port
from _notify_fakes import SmtpSink, notify_config
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hub.notify import DeliveryError, Item, Message, Target
from hub.notify.channels import EmailChannel

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return d / "cert.pem", d / "key.pem"


def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        b"alerts",
        b"smtp-secret",
    )
    return AuthResult(success=ok, handled=False)


def _contexts(cert: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS contexts for the test CA's certificate."""
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(*cert)
    return server_tls, ssl.create_default_context(cafile=str(cert[0]))


def _message() -> Message:
    item = Item(
        log_id=1,
        alert_id="a1",
        episode_id="a1",
        transition="RAISED",
        severity="CRITICAL",
        alert_type="THRESHOLD_CRITICAL",
        status="ACTIVE",
        customer_id="cust-1",
        resource_key="cust-1/bandwidth",
        resource_type="bandwidth",
        text="over the limit",
        current_value=None,
        limit_value=None,
        percentage=None,
        unit="GB",
        actor=None,
        comment=None,
        at=dt.datetime.now(dt.UTC),
    )
    return Message("cust-1", "email", (item,), "https://dash.example")


async def test_email_goes_over_starttls_with_auth_and_a_wrong_password_is_permanent(
    cert: tuple[Path, Path],
) -> None:
    server_tls, client_tls = _contexts(cert)
    sink = SmtpSink()
    port = free_port()
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=_auth,
        auth_required=True,
    )
    controller.start()
    try:
        good = notify_config(
            port, smtp_tls="starttls", smtp_username="alerts", smtp_password="smtp-secret"
        )
        with anyio.fail_after(20):
            await EmailChannel(good, tls_context=client_tls).send(
                _message(), Target(recipients=("noc@cust.example",))
            )
        bad = msgspec.structs.replace(good, smtp_password="wrong-CANARY")
        with anyio.fail_after(20), pytest.raises(DeliveryError, match="authentication") as info:
            await EmailChannel(bad, tls_context=client_tls).send(
                _message(), Target(recipients=("noc@cust.example",))
            )
        assert not info.value.retryable
        assert "CANARY" not in str(info.value)
    finally:
        controller.stop()
    (msg,) = sink.messages
    assert "CRITICAL" in msg["Subject"]


# aiosmtpd warns about AUTH without STARTTLS; the connection is TLS from its first byte
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_email_goes_over_implicit_tls_with_auth(cert: tuple[Path, Path]) -> None:
    server_tls, client_tls = _contexts(cert)
    sink = SmtpSink()
    port = free_port()
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        ssl_context=server_tls,
        server_hostname="127.0.0.1",
        authenticator=_auth,
        auth_required=True,
        # aiosmtpd only counts STARTTLS as TLS for AUTH; this whole connection is TLS
        auth_require_tls=False,
    )
    controller.start()
    try:
        config = notify_config(
            port, smtp_tls="tls", smtp_username="alerts", smtp_password="smtp-secret"
        )
        with anyio.fail_after(20):
            await EmailChannel(config, tls_context=client_tls).send(
                _message(), Target(recipients=("noc@cust.example",))
            )
        # without credentials the server refuses the mail: a clear, permanent error
        anonymous = msgspec.structs.replace(config, smtp_username=None, smtp_password=None)
        with anyio.fail_after(20), pytest.raises(DeliveryError) as info:
            await EmailChannel(anonymous, tls_context=client_tls).send(
                _message(), Target(recipients=("noc@cust.example",))
            )
        assert "530" in str(info.value) or "auth" in str(info.value).lower()
    finally:
        controller.stop()
    (msg,) = sink.messages
    assert msg["To"] == "noc@cust.example"
