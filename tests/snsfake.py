"""A stand-in for Amazon SNS on 127.0.0.1: serves a certificate the tests make and signs
messages with its key like SNS does (signature versions 1 and 2)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.services import running

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"


def make_certificate(key: rsa.RSAPrivateKey, *, days: int = 30, expired: bool = False) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    start = now - timedelta(days=days * 2 if expired else 1)
    end = now - timedelta(days=1) if expired else now + timedelta(days=days)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@dataclass
class FakeSns:
    """Serves certificates and SubscribeURLs on 127.0.0.1, and signs messages like SNS."""

    key: rsa.RSAPrivateKey
    base: str = ""
    certificates: dict[str, bytes] = field(default_factory=dict)
    cert_fetches: list[str] = field(default_factory=list)
    confirmations: list[str] = field(default_factory=list)

    async def serve_cert(self, request: web.Request) -> web.Response:
        self.cert_fetches.append(request.path)
        pem = self.certificates.get(request.match_info["name"])
        if pem is None:
            return web.Response(status=404)
        return web.Response(body=pem, content_type="application/x-pem-file")

    async def confirm(self, request: web.Request) -> web.Response:
        self.confirmations.append(request.query.get("Token", ""))
        return web.Response(text="<ConfirmSubscriptionResponse/>", content_type="text/xml")

    def cert_url(self, name: str = "SimpleNotificationService-test.pem") -> str:
        return f"{self.base}/certs/{name}"

    def message(
        self,
        kind: str = "Notification",
        message: Any = None,
        *,
        version: str = "1",
        key: rsa.RSAPrivateKey | None = None,
        cert_url: str | None = None,
        subject: str | None = None,
        topic: str = TOPIC,
        message_id: str | None = None,
        subscribe_path: str = "/confirm",
    ) -> dict[str, str]:
        data: dict[str, str] = {
            "Type": kind,
            "MessageId": message_id or str(uuid.uuid4()),
            "TopicArn": topic,
            "Message": message if isinstance(message, str) else json.dumps(message or {}),
            "Timestamp": "2026-11-25T12:00:00.000Z",
            "SignatureVersion": version,
            "SigningCertURL": cert_url or self.cert_url(),
        }
        if subject is not None:
            data["Subject"] = subject
        if kind != "Notification":
            data["Token"] = "token-" + uuid.uuid4().hex
            data["SubscribeURL"] = f"{self.base}{subscribe_path}?Token={data['Token']}"
        fields = (
            ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
            if kind == "Notification"
            else ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
        )
        text = "".join(f"{name}\n{data[name]}\n" for name in fields if name in data)
        algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
        signature = (key or self.key).sign(text.encode(), padding.PKCS1v15(), algorithm)
        data["Signature"] = base64.b64encode(signature).decode()
        return data


async def serve_fake_sns() -> AsyncIterator[FakeSns]:
    """Start a FakeSns with a fresh key and certificate on 127.0.0.1."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sns = FakeSns(key)
    sns.certificates["SimpleNotificationService-test.pem"] = make_certificate(key)
    app = web.Application()
    app.router.add_get("/certs/{name}", sns.serve_cert)
    app.router.add_get("/confirm", sns.confirm)
    async with running(app) as url:
        sns.base = url
        yield sns
