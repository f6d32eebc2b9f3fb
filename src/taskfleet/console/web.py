"""Rendering console pages: templates, the common page context, security headers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from taskfleet import __version__
from taskfleet.ns import drafts
from taskfleet.ns.state import ns_state

PREFIX = "/console"
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals.update(prefix=PREFIX, version=__version__)


def _rule_value(value: Any) -> str:
    """A collection rule's value as text: a pattern, a list of subnets, facts."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


templates.env.filters["rule_value"] = _rule_value

# No inline script or style anywhere: every script and stylesheet is a file of ours.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

# The pages, in menu order; a new page family adds itself here.
NAV = [
    ("dashboard", "Dashboard", ""),
    ("computers", "Computers", "/computers"),
    ("collections", "Collections", "/collections"),
    ("sites", "Sites", "/sites"),
    ("taskservers", "Task servers", "/taskservers"),
    ("policy", "Task Servers policy", "/policy"),
    ("agent-config", "Agent configuration", "/agent-config"),
    ("tasks", "Tasks", "/tasks"),
    ("jobs", "Jobs", "/jobs"),
    ("files", "Files", "/files"),
    ("runs", "Runs", "/runs"),
    ("schedules", "Schedules", "/schedules"),
    ("audit", "Audit log", "/audit"),
]


def secure_headers(response: HTMLResponse) -> HTMLResponse:
    response.headers.update(SECURITY_HEADERS)
    return response


async def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
    page: str = "",
) -> HTMLResponse:
    """A whole page, or only its fragment when htmx asks for one (``HX-Request``)."""
    ctx: dict[str, Any] = {"page": page, "nav": NAV, **(context or {})}
    user = getattr(request.state, "console_user", None)
    ctx.setdefault("user", user)
    if user is not None:
        async with ns_state(request).session() as session:
            ctx["unapplied"] = [
                kind for kind in drafts.KINDS if await drafts.unapplied(session, kind)
            ]
    response = templates.TemplateResponse(request, template, ctx, status_code=status_code)
    return secure_headers(response)
