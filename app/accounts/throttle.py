"""Throttling of password and token guesses: exponential back-off per account and per address.

Each failed login counts against the account (its user name, whether it exists or not) and
against the client's address; each wrong API or reader token counts against the address. The
first failures are free (``SYNTUMOR_LOGIN_ATTEMPTS`` per account, ``…_PER_ADDRESS`` per
address); after them every failure doubles the wait before the next try
(``SYNTUMOR_LOGIN_BACKOFF_S``, then twice that, … up to :data:`MAX_WAIT_S`), and a try during
the wait is answered 429 with ``Retry-After`` without looking at the password at all. A quiet
hour forgets the count; a successful login forgets the account's (not the address's).

Every failure is written to the ``app.audit`` log (user name, address, count). The counts live
in the server process (one server process per data folder is the supported set-up); the
client's address is the connection's, or ``X-Forwarded-For`` from a trusted proxy.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from fastapi import Request

from app.errors import TooManyRequests

audit = logging.getLogger("app.audit")

MAX_WAIT_S = 15 * 60
FORGET_AFTER_S = 3600
MAX_KEYS = 100_000


@dataclass
class _Failures:
    count: int
    last: float


class Backoff:
    """Failures per key, and how long a key must wait before its next try."""

    def __init__(self, free: int, first_wait_s: float, max_wait_s: float = MAX_WAIT_S) -> None:
        self.free = free
        self.first_wait_s = first_wait_s
        self.max_wait_s = max_wait_s
        self._failures: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    def _current(self, key: str, now: float) -> _Failures | None:
        entry = self._failures.get(key)
        if entry is not None and now - entry.last > max(FORGET_AFTER_S, self.max_wait_s):
            del self._failures[key]
            return None
        return entry

    def wait_s(self, key: str) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        now = time.monotonic()
        with self._lock:
            entry = self._current(key, now)
            if entry is None or entry.count < self.free:
                return 0.0
            wait = min(self.max_wait_s, self.first_wait_s * 2 ** (entry.count - self.free))
            return max(0.0, entry.last + wait - now)

    def fail(self, key: str) -> int:
        """Count a failure; returns the count."""
        now = time.monotonic()
        with self._lock:
            entry = self._current(key, now)
            if entry is None:
                if len(self._failures) >= MAX_KEYS:
                    self._failures.pop(next(iter(self._failures)))  # the oldest key
                entry = self._failures[key] = _Failures(0, now)
            entry.count += 1
            entry.last = now
            return entry.count

    def forget(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


class Guards:
    """The app's back-offs: per account, per address (logins), per address (tokens)."""

    def __init__(self, settings) -> None:
        first = settings.login_backoff_s
        self.accounts = Backoff(settings.login_attempts, first)
        self.addresses = Backoff(settings.login_attempts_per_address, first)
        self.tokens = Backoff(settings.login_attempts_per_address, first)


def guards(request: Request) -> Guards:
    """The app's :class:`Guards` (made on first use)."""
    state = request.app.state
    if getattr(state, "guards", None) is None:
        state.guards = Guards(state.settings)
    return state.guards


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _too_many(what: str, wait: float) -> TooManyRequests:
    seconds = max(1, math.ceil(wait))
    return TooManyRequests(
        f"too many failed {what} from this address or for this account: try again in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


def check_login(request: Request, username: str) -> None:
    """429 while the account or the address must wait."""
    found = guards(request)
    wait = max(found.accounts.wait_s(_account(username)),
               found.addresses.wait_s(client_address(request)))  # fmt: skip
    if wait > 0:
        raise _too_many("logins", wait)


def login_failed(request: Request, username: str) -> None:
    found = guards(request)
    address = client_address(request)
    count = found.accounts.fail(_account(username))
    found.addresses.fail(address)
    audit.warning("failed login for %r from %s (%d in a row)", _account(username), address, count)


def login_succeeded(request: Request, username: str) -> None:
    guards(request).accounts.forget(_account(username))


def check_token(request: Request) -> None:
    """429 while the address must wait after wrong API or reader tokens."""
    wait = guards(request).tokens.wait_s(client_address(request))
    if wait > 0:
        raise _too_many("tokens", wait)


def token_failed(request: Request, kind: str) -> None:
    address = client_address(request)
    count = guards(request).tokens.fail(address)
    audit.warning("wrong %s token from %s (%d in a row)", kind, address, count)


def _account(username: str) -> str:
    return username.strip().lower()[:64]
