"""Voter and session pseudonyms: salted HMAC-SHA256 (raw IPs and session ids are never stored);
the salt is ``APEX_SALT`` (a Space secret) or one generated once into the data directory (0600)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
from pathlib import Path

from apex.files import atomic_path
from apex.settings import Settings

logger = logging.getLogger(__name__)

SALT_FILE = "salt.secret"
#: Hex characters kept from each digest: 128 bits, far beyond any collision risk for voters.
_DIGEST_CHARS = 32


def client_address(forwarded_for: str | None, peer: str | None, trusted_proxies: int) -> str | None:
    """The visitor's address (IPv4/IPv6 normalised): ``hops[-trusted_proxies]`` of
    ``X-Forwarded-For``, written by a proxy we trust (forged hops sit further left, never read);
    ``peer`` (``request.client.host``) for ``trusted_proxies=0`` or a header with fewer hops."""
    if trusted_proxies < 0:
        raise ValueError(f"trusted_proxies must be >= 0, got {trusted_proxies}")
    hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
    if trusted_proxies == 0 or len(hops) < trusted_proxies:
        return _normalise(peer)
    return _normalise(hops[-trusted_proxies])


def _normalise(address: str | None) -> str | None:
    if not address:
        return None
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:  # not a bare IP (a host name, or ip:port): hash it as written
        return address.strip()


def load_or_create_salt(settings: Settings) -> str:
    """Return the pseudonym salt: ``settings.salt``, else a random 256-bit one created once
    (exclusively, so processes starting together agree) at ``data_dir/salt.secret`` (0600);
    raises ValueError for an empty salt file."""
    if settings.salt:
        return settings.salt
    path = Path(settings.data_dir) / SALT_FILE
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # exclusive: the first process wins
            with atomic_path(path, exclusive=True) as tmp:  # never seen half-written
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # owner-only
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(secrets.token_hex(32))
            logger.warning(
                "APEX_SALT is not set: generated a voter-pseudonym salt and kept it in %s "
                "(mode 0600). Set APEX_SALT as a secret to control it; keep the file if you move "
                "the data directory.",
                path,
            )
    salt = path.read_text(encoding="utf-8").strip()
    if not salt:
        raise ValueError(
            f"the salt file {path} is empty; delete it to generate a new one, or set APEX_SALT."
        )
    return salt


class Pseudonymizer:
    """Turns session ids and IP addresses into stable, non-reversible pseudonyms, keyed by
    ``salt`` (:func:`load_or_create_salt`)."""

    def __init__(self, salt: str) -> None:
        if not salt:
            raise ValueError("the pseudonym salt is empty; use load_or_create_salt(settings).")
        self._key = salt.encode("utf-8")

    def _digest(self, kind: str, *parts: str) -> str:
        # The kind prefix and NUL separators keep the hash families apart: a session id can never
        # produce the same pseudonym as some IP address.
        message = "\0".join((kind, *parts)).encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:_DIGEST_CHARS]

    def voter(self, session_id: str, ip: str | None) -> str:
        """Pseudonym of the person voting (``user_pseudonym``): of the IP address when known, so
        a voter keeps one identity (and rate limit) across sessions; else of the session id."""
        if ip:
            return self._digest("voter-ip", ip.strip())
        if not session_id:
            raise ValueError("a voter needs a session id or an IP address; got neither.")
        return self._digest("voter-session", session_id)

    def account(self, account_id: str) -> str:
        """Pseudonym of a signed-in Hugging Face account (its stable id, not its user name)."""
        if not account_id:
            raise ValueError("the account id is empty; pass the OAuth profile's `sub`.")
        return self._digest("voter-account", account_id)

    def session(self, session_id: str) -> str:
        """Pseudonym of one browser session (binds battles to the session that was issued them)."""
        if not session_id:
            raise ValueError("the session id is empty; pass the UI's per-session id.")
        return self._digest("session", session_id)
