"""Who may talk to the engine: the bind rule (loopback, or CurveZMQ keys), the launch and admin tokens, and the
clients the loop tells apart by the `session` of their requests (by their connection when they send none)."""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import zmq

from csd_blender.protocol import codec
from csd_blender.protocol.endpoints import is_loopback
from csd_blender.protocol.errors import ErrorCode, ProtocolError

logger = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16
# A session id is a bearer secret: whoever sends it owns that client's jobs, from any connection (a client that
# reconnects after a false death takes its jobs along that way). It is therefore random (the client's is 128 bits),
# never sent to another client and logged only by a short prefix; shorter ones are refused.
MIN_SESSION_CHARS = 16
LOGGED_SESSION_CHARS = 6


def check_bind(bind: str, curve_dir: str | None) -> None:
    """Refuse a non-loopback bind without CurveZMQ keys (ValueError naming both ways out)."""
    if not is_loopback(bind) and not curve_dir:
        raise ValueError(
            f"refusing to bind {bind} (not loopback) without CurveZMQ keys: "
            "pass --curve-dir with server.key_secret, or bind tcp://127.0.0.1"
        )


def setup_curve(context: zmq.Context, sock: zmq.Socket, curve_dir: str):
    """Make `sock` a CurveZMQ server with the keys in `curve_dir`; return the started authenticator.

    Args:
        context: the server's ZeroMQ context.
        sock: the ROUTER socket, not yet bound.
        curve_dir: folder with `server.key_secret` and optionally `authorized_clients/` (public keys).
    """
    import zmq.auth
    from zmq.auth.thread import ThreadAuthenticator

    public, secret = zmq.auth.load_certificate(os.path.join(curve_dir, "server.key_secret"))
    if not secret:
        raise ValueError(f"{curve_dir}/server.key_secret holds no secret key")
    auth = ThreadAuthenticator(context)
    auth.start()
    clients = os.path.join(curve_dir, "authorized_clients")
    auth.configure_curve(domain="*", location=clients if os.path.isdir(clients) else zmq.auth.CURVE_ALLOW_ANY)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    return auth


class Tokens:
    """The launch token every request must carry, and the optional admin token (compared in constant time).

    Args:
        token: at least MIN_TOKEN_CHARS characters.
        admin_token: "" for none, else at least MIN_TOKEN_CHARS characters and different from `token`.
    """

    def __init__(self, token: str, admin_token: str = ""):
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(f"token: must be at least {MIN_TOKEN_CHARS} characters")
        if admin_token and len(admin_token) < MIN_TOKEN_CHARS:
            raise ValueError(f"admin token: must be at least {MIN_TOKEN_CHARS} characters")
        if admin_token and admin_token == token:
            raise ValueError("admin token: must differ from the token")
        self._token = token.encode("utf-8")
        self._admin = admin_token.encode("utf-8") if admin_token else b""

    @property
    def has_admin(self) -> bool:
        """Whether an admin token is set (a shared engine)."""
        return bool(self._admin)

    def authorise(self, header: codec.Header) -> bool:
        """Check the request's token; return True for the admin token. Raises UNAUTHORIZED."""
        token = header.token.encode("utf-8", "surrogatepass")
        if hmac.compare_digest(token, self._token):
            return False
        if self._admin and hmac.compare_digest(token, self._admin):
            return True
        raise ProtocolError(
            ErrorCode.UNAUTHORIZED,
            "missing or wrong token" if header.token else "the request carries no token",
        )


@dataclass
class ClientInfo:
    """What the loop knows of one client: where its messages go and when it last spoke.

    Args:
        identity: the ROUTER identity of its latest connection.
        last_seen: time.monotonic() of its latest authorised request.
    """

    identity: bytes
    last_seen: float


class Clients:
    """The clients the loop has heard from, by owner key: ("session", id) or ("connection", ROUTER identity)."""

    def __init__(self):
        self._clients: dict[Any, ClientInfo] = {}

    def seen(self, identity: bytes, header: codec.Header, jobs: Iterable) -> Any:
        """Note that a client spoke; return its owner key. A session on a new connection takes its jobs along.

        Args:
            identity: the ROUTER identity the request came from.
            header: the request's decoded header.
            jobs: the job records (with `owner` and `identity`) whose messages follow their owner.
        """
        if header.session and len(header.session) < MIN_SESSION_CHARS:
            raise ProtocolError(
                ErrorCode.UNAUTHORIZED,
                f"session: a session id is a secret that owns its jobs; use at least {MIN_SESSION_CHARS} random "
                f"characters (got {len(header.session)}), or none",
            )
        owner = ("session", header.session) if header.session else ("connection", identity)
        client = self._clients.get(owner)
        if client is None:
            self._clients[owner] = ClientInfo(identity, time.monotonic())
        else:
            client.last_seen = time.monotonic()
            if client.identity != identity:
                logger.info("client session %s… reconnected", header.session[:LOGGED_SESSION_CHARS])
                client.identity = identity
                for record in jobs:
                    if record.owner == owner:
                        record.identity = identity
        return owner

    def forgive(self, gap_s: float) -> None:
        """Give every client `gap_s` seconds back (the engine itself stalled)."""
        for client in self._clients.values():
            client.last_seen += gap_s

    def silent_since(self, limit: float) -> list[tuple[Any, float]]:
        """(owner, last_seen) of the clients silent since before `limit` (a time.monotonic() value)."""
        return [(owner, c.last_seen) for owner, c in self._clients.items() if c.last_seen < limit]

    def forget(self, owner: Any) -> None:
        """Drop a client (it has no job left)."""
        self._clients.pop(owner, None)


def describe(owner: Any) -> str:
    """An owner key for the log: the session id's first characters (it is a secret), or the connection's."""
    kind, value = owner
    return f"session {value[:LOGGED_SESSION_CHARS]}…" if kind == "session" else f"connection {value.hex()[:12]}"
