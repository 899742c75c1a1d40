"""Signatures: the links and forms that work without a key, and webhook bodies.

A link or form is signed with HMAC-SHA256 under the server's own secret (`signing.key` in the
data dir, made on first start, readable by the daemon's user only) over what it grants and until
when; anyone holding it may use it, nobody can forge or extend one. Webhook bodies are signed as
CloudConvert signs them, so its SDKs' `Webhook.verify` accepts them: the hex HMAC-SHA256 of the
raw body under the receiver's signing secret, in the `CloudConvert-Signature` header; and as
ConvertFly signs them, `X-Webhook-Signature: v1=<hex HMAC-SHA256 of "timestamp.body">` beside
`X-Webhook-Timestamp`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from convertd import clock

SIGNATURE_HEADER = "CloudConvert-Signature"
SECRET_BYTES = 32

logger = logging.getLogger(__name__)


class Signer:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @classmethod
    def load(cls, path: Path) -> Signer:
        """The secret at `path`, made (0600) if there is none yet, or made anew if what is there
        is too short to be one (a file cut short by a power loss would make links forgeable)."""
        try:
            secret = path.read_bytes()
            if len(secret) >= SECRET_BYTES:
                return cls(secret)
            logger.warning("%s is damaged; a new one is made (older links stop working)", path)
            path.unlink()
        except FileNotFoundError:
            pass
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(SECRET_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
        # link, not replace: two processes starting at once agree on the first secret written.
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        return cls(path.read_bytes())

    def sign(self, purpose: str, subject: str, expires: int) -> str:
        return _signature(self._secret, purpose, subject, expires)

    def check(self, purpose: str, subject: str, expires: str, signature: str) -> bool:
        """True if `signature` is ours for this purpose and subject and has not expired."""
        if len(signature) != 64 or any(c not in "0123456789abcdef" for c in signature):
            return False
        try:
            until = int(expires)
        except ValueError:
            return False
        if until < clock.now():
            return False
        # Not from the memo: how long a check takes must not tell what was signed lately.
        expected = _signature.__wrapped__(self._secret, purpose, subject, until)
        return hmac.compare_digest(expected, signature)


# Memoised, bounded: a status poll signs the same job's download link at every answer.
@functools.lru_cache(maxsize=4096)
def _signature(secret: bytes, purpose: str, subject: str, expires: int) -> str:
    message = f"{purpose}\n{subject}\n{expires}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def webhook_signature(secret: str, body: bytes) -> str:
    """What the `CloudConvert-Signature` header of a webhook with this body carries."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def timestamped_signature(secret: str, timestamp: int, body: bytes) -> str:
    """What `X-Webhook-Signature` carries: ConvertFly's scheme, which binds the send time to the
    body so a receiver can refuse replays."""
    signed = str(timestamp).encode() + b"." + body
    return "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def webhook_headers(secret: str, event_id: str, event: str, body: bytes) -> dict[str, str]:
    """Every delivery's headers: both signatures, and the event id receivers de-duplicate on."""
    timestamp = int(clock.now())
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: webhook_signature(secret, body),
        "X-Webhook-Id": event_id,
        "X-Webhook-Event": event,
        "X-Webhook-Timestamp": str(timestamp),
        "X-Webhook-Signature": timestamped_signature(secret, timestamp, body),
    }
