"""Reading a ``--models`` file: YAML, with the two surprises of YAML 1.1 taken out.

A key twice in one mapping (a model listed twice) is an error, not the last one silently
winning, and ``16:9`` is the string a ratio is, not the base-60 number 969. Every error names
the file, and the line where YAML can tell it.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ModelsFileError", "ModelsLoader", "read_models_file"]


class ModelsFileError(ValueError):
    """A ``--models`` file the mock cannot use; the message names the file, the model and the
    field. Usual causes: a misspelt key, a model id without its provider, a price table that
    misses a value the input schema allows."""


class ModelsLoader(yaml.SafeLoader):
    """YAML as ``yaml.safe_load`` reads it, except that a key twice in one mapping is an error
    and ``16:9`` is a string (YAML 1.1 reads it as the base-60 number 969)."""


INT_TAG, FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
ModelsLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (INT_TAG, FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ModelsLoader.add_implicit_resolver(
    INT_TAG,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
ModelsLoader.add_implicit_resolver(
    FLOAT_TAG,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Any:
    seen: set[Hashable] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, Hashable):
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
    return loader.construct_mapping(node, deep=True)


ModelsLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_unique_mapping
)


def read_models_file(path: Path) -> Any:
    """The parsed file (not yet checked: ``merge_models`` does that)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ModelsFileError(
            f"{path}: cannot read the models file: {error.strerror or error}"
        ) from None
    except UnicodeDecodeError as error:
        raise ModelsFileError(f"{path}: not UTF-8 text: {error.reason}") from None
    try:
        return yaml.load(text, Loader=ModelsLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = error.problem or error.context or "cannot be parsed"
        raise ModelsFileError(f"{path}{line}: not valid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise ModelsFileError(f"{path}: not valid YAML: {error}") from None
