"""What the commands share: exit codes, common options, and parsing of option values.

Values that come from the user (JSON inputs, moments in time, action modules, store
URLs) are checked here, so a bad value is refused with one line naming the option
before anything is read or recorded.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import click

from flowledger.domain.status import ExecutionStatus
from flowledger.engine.actions import ActionRegistry

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
"""The command did what was asked (an execution completed, or rests PAUSED)."""
EXIT_FAILED = 1
"""A check failed (an invalid definition, a history that does not verify) or an
execution ended FAILED, ROLLED_BACK, ROLLBACK_FAILED or CANCELLED."""
EXIT_BAD_INPUT = 2
"""Bad usage or bad input: nothing was recorded."""

FAILED_STATUSES = frozenset(
    {
        ExecutionStatus.FAILED,
        ExecutionStatus.ROLLED_BACK,
        ExecutionStatus.ROLLBACK_FAILED,
        ExecutionStatus.CANCELLED,
    }
)
"""Statuses an execution command reports with :data:`EXIT_FAILED`."""

ACTIONS_ATTRIBUTE = "actions"
"""The name of the ``ActionRegistry`` an ``--actions`` module exposes."""

ACTIONS_HELP = "Module exposing an ActionRegistry named 'actions' (dotted name or .py path)."


def common_options(command: F) -> F:
    """Add the options every command takes: ``--store`` and ``--json``."""
    command = click.option(
        "--store",
        "store",
        envvar="FLOWLEDGER_STORE",
        default=None,
        help="Store URL (memory://, sqlite:///path.db, postgresql://...). "
        "Default: $FLOWLEDGER_STORE, else sqlite:///flowledger.db.",
    )(command)
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(command)


def actions_option(help_text: str = ACTIONS_HELP) -> Callable[[F], F]:
    """Return the ``--actions MODULE`` option (the module's name arrives as ``actions_module``)."""
    return click.option("--actions", "actions_module", metavar="MODULE", help=help_text)


def exit_code_for(status: ExecutionStatus) -> int:
    """Return the exit code that reports an execution resting in ``status``."""
    return EXIT_FAILED if status in FAILED_STATUSES else EXIT_OK


def json_object(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Parse a JSON object given inline or, as ``@path``, in a file (an option callback).

    Raises:
        click.BadParameter: No such file, not JSON, or not a JSON object.
    """
    del ctx, param  # click names the option in the message
    if value is None:
        return None
    text = value
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise click.BadParameter(f"no such file: {path}")
        text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}"
        raise click.BadParameter(f"not valid JSON ({error.msg} at {where})") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"expected a JSON object, got {type(data).__name__}")
    return data


def aware_time(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Parse an ISO 8601 moment with a UTC offset (an option callback).

    A time without an offset is refused rather than guessed to be UTC or local.

    Raises:
        click.BadParameter: Not an ISO 8601 time, or one without an offset.
    """
    del ctx, param
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time") from None
    if moment.utcoffset() is None:
        raise click.BadParameter(
            f"{value!r} has no UTC offset; add one, for example "
            "2025-01-31T12:00:00Z or 2025-01-31T13:00:00+01:00"
        )
    return moment


def load_actions(spec: str) -> ActionRegistry:
    """Import an actions module (dotted name or ``.py`` path) and return its registry.

    A dotted name is looked up from the working directory too, as ``python -m`` does.

    Raises:
        click.BadParameter: The module cannot be found or imported, or it has no
            ``ActionRegistry`` named ``actions``.
    """
    try:
        module = _import_path(Path(spec)) if _is_path(spec) else _import_name(spec)
    except click.BadParameter:
        raise
    except Exception as error:  # user code: any failure while importing it is bad input
        reason = f"cannot import {spec}: {type(error).__name__}: {error}"
        raise click.BadParameter(reason, param_hint="--actions") from error
    registry = getattr(module, ACTIONS_ATTRIBUTE, None)
    if not isinstance(registry, ActionRegistry):
        reason = f"{spec} has no ActionRegistry named {ACTIONS_ATTRIBUTE!r}"
        raise click.BadParameter(reason, param_hint="--actions")
    return registry


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or Path(spec).is_file()


def _import_path(path: Path) -> ModuleType:
    if not path.is_file():
        raise click.BadParameter(f"no such file: {path}", param_hint="--actions")
    # The file's own name when free, so its actions' qualified names read naturally.
    name = path.stem if path.stem.isidentifier() and path.stem not in sys.modules else None
    name = name or f"flowledger_actions_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise click.BadParameter(f"{path} is not a Python module", param_hint="--actions")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import_name(name: str) -> ModuleType:
    working_directory = str(Path.cwd())
    if working_directory not in sys.path:
        sys.path.insert(0, working_directory)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(f"{error.name}.")):
            reason = f"no module named {name!r} (give a dotted module name or a .py path)"
            raise click.BadParameter(reason, param_hint="--actions") from error
        raise


def read_bundle(file: Path) -> Any:
    """Read an export bundle's JSON (a click error names what is wrong with the file)."""
    if not file.is_file():
        raise click.BadParameter(f"no such file: {file}", param_hint="FILE")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise click.BadParameter(
            f"{file} is not a JSON bundle ({error})", param_hint="FILE"
        ) from None
