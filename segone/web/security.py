"""Who may open the dashboard, and how a browser proves it on each request.

- A person logs in with an admin token (``[server] admin_tokens``) or a user name and password
  (``segone users add``; the password is kept as a scrypt hash). Write keys and decide tokens are
  refused: they are handed to browsers and apps, which must not read the warehouse.
- A login is exchanged for a session cookie: ``user|expiry|nonce`` signed with HMAC-SHA256 under
  a secret kept in the project (``.segone/web_secret``, mode 0600), ``HttpOnly``,
  ``SameSite=Strict``. The cookie holds no token and no password.
- Every form carries a CSRF token, an HMAC of the session's nonce; a POST without the right one
  is a 403 (``SameSite`` alone does not cover every browser and sub-domain).

The standard library does it all (hashlib.scrypt, hmac, secrets): no new dependency.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from segone.exceptions import UserError

SESSION_COOKIE = "segone_session"
SESSION_SECONDS = 12 * 3600
# scrypt parameters: 2**14 x 8 x 1 costs ~16 MB and ~50 ms, OWASP's floor for scrypt
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
USERS_FILE = "users.json"
SECRET_FILE = "web_secret"


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def matches_any(candidate: str, keys: tuple[bytes, ...]) -> bool:
    """Whether ``candidate`` is one of ``keys``, comparing with every key every time (constant
    time: how long it takes says nothing about which key, or how close a guess was)."""
    c = candidate.encode()
    found = False
    for k in keys:
        found |= hmac.compare_digest(c, k)
    return bool(candidate) and found


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` of a password (salted; the parameters travel with it)."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_password(password: str, stored: str) -> bool:
    """Whether ``password`` hashes to ``stored`` (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


def state_dir(project_dir: Path) -> Path:
    """Where the dashboard keeps its secret and users: the project's ``.segone`` folder."""
    return Path(project_dir) / ".segone"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def load_users(project_dir: Path | None) -> dict[str, str]:
    """User name -> password hash (empty when none were added)."""
    if project_dir is None:
        return {}
    path = state_dir(project_dir) / USERS_FILE
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.get("users", {}).items()}


def add_user(project_dir: Path, name: str, password: str) -> bool:
    """Add or replace a user; True when the user is new."""
    if not name or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
        raise UserError(f"user names use letters, digits, '.', '_' and '-'; got {name!r}")
    if name == "admin":
        raise UserError("'admin' is the name of admin-token logins; choose another user name")
    if len(password) < 10:
        raise UserError("the password must be at least 10 characters long")
    users = load_users(project_dir)
    new = name not in users
    users[name] = hash_password(password)
    _write_private(
        state_dir(project_dir) / USERS_FILE, json.dumps({"users": users}, indent=2, sort_keys=True)
    )
    return new


def remove_user(project_dir: Path, name: str) -> None:
    users = load_users(project_dir)
    if name not in users:
        raise UserError(f"no user {name!r}")
    del users[name]
    _write_private(
        state_dir(project_dir) / USERS_FILE, json.dumps({"users": users}, indent=2, sort_keys=True)
    )


def load_secret(project_dir: Path | None) -> bytes:
    """The signing secret: kept in the project so sessions outlive a restart; a process-only
    one when there is no project directory."""
    if project_dir is None:
        return secrets.token_bytes(32)
    path = state_dir(project_dir) / SECRET_FILE
    if not path.exists():
        _write_private(path, secrets.token_hex(32))
    return bytes.fromhex(path.read_text(encoding="utf-8").strip())


@dataclass(frozen=True)
class Session:
    user: str
    expires: int
    nonce: str


class Signer:
    """Signs and checks session cookies and CSRF tokens with one secret."""

    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"segone-web-session|" + secret).digest()
        self._csrf_key = hashlib.sha256(b"segone-web-csrf|" + secret).digest()

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(self, user: str, now: float | None = None) -> str:
        expires = int((now or time.time()) + SESSION_SECONDS)
        payload = f"{_b64(user.encode())}|{expires}|{secrets.token_urlsafe(16)}"
        return f"{payload}|{self._mac(payload)}"

    def read(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session of a cookie; None when absent, forged or expired."""
        if not cookie or cookie.count("|") != 3:
            return None
        payload, _, mac = cookie.rpartition("|")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        user, expires, nonce = payload.split("|")
        try:
            if int(expires) < (now or time.time()):
                return None
            return Session(_unb64(user).decode(), int(expires), nonce)
        except (ValueError, UnicodeDecodeError):
            return None

    def csrf(self, session: Session) -> str:
        return _b64(hmac.new(self._csrf_key, session.nonce.encode(), hashlib.sha256).digest())

    def check_csrf(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf(session))

    def login_csrf(self, nonce: str) -> str:
        """A CSRF token for the login form (before any session: bound to a pre-login cookie)."""
        return _b64(hmac.new(self._csrf_key, b"login|" + nonce.encode(), hashlib.sha256).digest())


def csp() -> str:
    """The Content-Security-Policy of every dashboard page: scripts only from our own files
    (no inline script, no eval); styles may be inline because ECharts styles its tooltips
    with ``style`` attributes."""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


SECURITY_HEADERS = {
    "Content-Security-Policy": csp(),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-store",
}
