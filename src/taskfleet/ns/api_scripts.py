"""Admin API for run-script tasks: declared parameters and options, run previews.

The task body (``ScriptOptions``, the base of ``api_work.TaskRequest``) and the run body's
``params`` are checked by ``ns.script_tasks`` and ``ns.parameters``, which name the
field at fault (``parameters[2].default``, ``params.site``); here only their shape
and size are declared, for the OpenAPI document.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import Field

from taskfleet.ns import parameters, preview
from taskfleet.ns.auth import Viewer
from taskfleet.ns.openapi import errors
from taskfleet.ns.state import ns_state
from taskfleet.protocol.fields import Int32, Name, ShortText, bounded_list, text

router = APIRouter(prefix="/api", tags=["work"])
Value = Annotated[str, text(parameters.MAX_VALUE_CHARS)] | int | bool
MAX_TARGETS = 10_000


@dataclass
class ParameterDeclaration:
    """One declared parameter of a run-script task (ns.parameters)."""

    name: Annotated[str, text(64, min_length=1)]
    type: Annotated[ShortText, Field(json_schema_extra={"enum": list(parameters.TYPES)})] = "string"
    # Text, or a number / true-false for those types. A secret's default is shown
    # masked; giving the mask back on an edit keeps the stored one.
    default: Value | None = None
    required: bool = False
    secret: bool = False
    ask: bool = False  # asked at run time: every run must give a value
    choices: Annotated[list[ShortText], bounded_list(parameters.MAX_CHOICES)] = field(
        default_factory=list
    )


@dataclass(kw_only=True)
class ScriptOptions:
    """Run-script options beyond the script (ns.script_tasks)."""

    working_dir: Annotated[str, text(1024)] = ""
    env: Annotated[dict[ShortText, Annotated[str, text(4096)]], bounded_list(100)] = field(
        default_factory=dict
    )
    success_codes: Annotated[list[Int32], bounded_list(32)] = field(default_factory=lambda: [0])
    run_as: Annotated[str, text(64)] = ""
    parameters: Annotated[list[ParameterDeclaration], bounded_list(parameters.MAX_PARAMETERS)] = (
        field(default_factory=list)
    )


def script_params(body: Any) -> dict[str, Any]:
    """A task body's run-script params, as ``ns.tasks`` checks them."""
    out: dict[str, Any] = {
        "script": body.script,
        "interpreter": body.interpreter,
        "success_codes": list(body.success_codes),
        "parameters": [asdict(p) for p in body.parameters],
    }
    for key in ("working_dir", "env", "run_as"):
        if getattr(body, key):
            out[key] = getattr(body, key)
    return out


RunParams = Annotated[dict[ShortText, Value], bounded_list(parameters.MAX_PARAMETERS)]


@dataclass
class PreviewRequest:
    task: Name
    targets: Annotated[list[Name], bounded_list(MAX_TARGETS)] = field(default_factory=list)
    exclude: Annotated[list[Name], bounded_list(MAX_TARGETS)] = field(default_factory=list)


@router.post("/runs/preview", responses=errors(404))
async def preview_run(request: Request, body: PreviewRequest, _: Viewer) -> preview.RunPreview:
    """What a run would reach: how many computers, and which lack the script's interpreter."""
    async with ns_state(request).session() as session:
        return await preview.preview(session, body.task, body.targets, body.exclude)


def as_text(values: dict[str, Any]) -> dict[str, str]:
    """A run body's values as text (``true``/``false`` for JSON booleans), the way
    ``ns.parameters`` checks them against each parameter's type."""
    return {
        name: ("true" if value else "false") if isinstance(value, bool) else str(value)
        for name, value in values.items()
    }
