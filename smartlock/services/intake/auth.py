"""Who is calling the intake, and the HTTP rules every request passes first.

Every request except ``GET /healthz`` and ``GET /openapi.json`` carries an API token issued by
``smartlock credentials issue declarant NAME`` (or ``customs NAME``) as
``Authorization: Bearer <token>``; without a valid one the answer is 401. A declarant files,
sees and binds only its own declarations; customs staff see every declaration but file none
(403). Bodies are JSON only (415 otherwise: a form post or ``text/plain`` from another site's
page is refused before it is read) and at most :data:`MAX_BODY_BYTES` (413).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from smartlock.adapters.credentials import CredentialStore
from smartlock.core.declaration import as_sentence

#: Largest request body accepted, in bytes (a declaration form is a few KiB).
MAX_BODY_BYTES = 64 * 1024
#: Paths anyone may read.
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json"})
DECLARANT, CUSTOMS = "declarant", "customs"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: an identity name and its role (``declarant`` or ``customs``)."""

    name: str
    role: str

    def may_see(self, owner: str | None) -> bool:
        """True if this caller may read a declaration filed by ``owner``."""
        return self.role == CUSTOMS or (self.role == DECLARANT and owner == self.name)


#: Turns a bearer token into the caller, or None if the token is unknown or revoked.
Authenticate = Callable[[str], Principal | None]


def store_authenticator(store: CredentialStore) -> Authenticate:
    """Authenticates tokens against the credentials store (re-read when it changes)."""

    def authenticate(token: str) -> Principal | None:
        identity = store.identify_token(token, (DECLARANT, CUSTOMS))
        return Principal(identity.name, identity.role) if identity is not None else None

    return authenticate


PRINCIPAL = web.RequestKey("principal", Principal)
AUTHENTICATE = web.AppKey("authenticate", Callable[[str], Principal | None])


def _problem(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": as_sentence(message)}, status=status, headers=headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authentication, JSON-only bodies and the body-size limit, before any handler runs."""
    if request.path in PUBLIC_PATHS and request.method == "GET":
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    principal = (
        request.app[AUTHENTICATE](token.strip())
        if scheme.lower() == "bearer" and token.strip()
        else None
    )
    if principal is None:
        return _problem(
            401,
            "missing or invalid API token; send 'Authorization: Bearer <token>' with a token "
            "issued by `smartlock credentials issue declarant NAME`",
            {"WWW-Authenticate": 'Bearer realm="smartlock-intake"'},
        )
    request[PRINCIPAL] = principal
    if request.method in ("POST", "PUT", "PATCH"):
        if request.content_type != "application/json":
            return _problem(
                415,
                f"the body must be JSON with Content-Type application/json, not "
                f"{request.content_type or 'none'}",
            )
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _problem(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:  # a chunked body that grew past client_max_size
        return _problem(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
