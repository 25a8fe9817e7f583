"""``load_definition``: any accepted source to a checked, immutable ``WorkflowDefinition``."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from threading import Lock

from flowledger.domain.canonical import canonical_json
from flowledger.domain.definition.building import build_definition
from flowledger.domain.definition.checks import check_draft
from flowledger.domain.definition.formats import read_draft
from flowledger.domain.definition.model import WorkflowDefinition
from flowledger.domain.definition.parsing import read_source, structural_problems, to_json_data
from flowledger.errors import DefinitionError


def load_definition(source: object) -> WorkflowDefinition:
    """Load, check and normalise a workflow definition.

    Args:
        source: A mapping; JSON or YAML text; or a path (``os.PathLike``, or a string
            naming a ``.json``/``.yaml``/``.yml`` file). A string holding a line break,
            or starting with ``{`` or ``[``, is text, never a path; see
            :mod:`~flowledger.domain.definition.parsing` for the exact rule.

    Returns:
        The definition: steps in topological order (Kahn, ties by definition order),
        nested values read-only, ``hash`` the SHA-256 of the canonical JSON of
        ``to_dict()``, which loads back into an equal definition.

    Raises:
        DefinitionError: The source cannot be read or the definition is invalid;
            ``errors`` lists every problem found, structural ones first.
    """
    key = _cache_key(source)
    if key is not None:
        with _LOCK:
            cached = _LOADED.get(key)
            if cached is not None:
                _LOADED.move_to_end(key)
                return cached
    definition = _load(source)
    if key is not None:
        with _LOCK:
            _LOADED[key] = definition
            while len(_LOADED) > _CACHE_SIZE:
                _LOADED.popitem(last=False)
    return definition


# Definitions are immutable, and a backend typically starts many executions of the
# same one: checking it again each time cost milliseconds per start (hundreds for a
# thousand steps). Mapping sources are cached by their canonical JSON; paths and text
# are read again (a file may change), and failures are never cached.
_CACHE_SIZE = 128
_LOADED: OrderedDict[str, WorkflowDefinition] = OrderedDict()
_LOCK = Lock()


def _cache_key(source: object) -> str | None:
    if not isinstance(source, Mapping):
        return None
    try:
        return canonical_json(source)
    except (TypeError, ValueError, RecursionError):
        return None  # not plain JSON: loading reports it


def _load(source: object) -> WorkflowDefinition:
    data, problems = to_json_data(read_source(source))
    # A value already refused as non-JSON was replaced by null: do not report the
    # null's wrong type at the same place a second time.
    refused = {problem.path for problem in problems}
    problems += [found for found in structural_problems(data) if found.path not in refused]
    draft, format_problems = read_draft(data)
    semantic, order = check_draft(draft)
    problems += format_problems + semantic
    if problems:
        raise DefinitionError(problems)
    return build_definition(draft, order)
