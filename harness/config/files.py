"""Reading configuration documents a user hands in: `--from_config` files, sweep specs, a source config.json.

One reader for all of them, strict where the plain parsers are lenient:

- a document is at most `MAX_DOCUMENT_BYTES` long (a config of a real run is a few KB);
- YAML anchors and aliases (`&name`, `*name`, `<<: *name`) are refused: an alias "bomb" of a few
  lines expands to billions of items, and a configuration never needs them;
- a key repeated within one mapping (YAML) or object (JSON) is refused: the parsers silently keep
  the last value, so the file would not mean what it reads like;
- a number too long for Python to convert is refused like any other bad value.

Every problem is a `DocumentError` whose message is one short line (it never echoes the document);
the callers prefix the file and turn it into their own error type.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from gainakt.config import shown

__all__ = ["MAX_DOCUMENT_BYTES", "DocumentError", "is_yaml", "load_document", "parse_json", "parse_yaml"]

MAX_DOCUMENT_BYTES = 1 << 20


class DocumentError(ValueError):
    """Why a configuration document is refused: one short line, without the file name."""


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def is_yaml(path: str | Path) -> bool:
    return Path(path).suffix.lower() in (".yaml", ".yml")


# ---------------------------------------------------------------------------------------------
# YAML


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without anchors or aliases, and with unique keys per mapping."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            kind = "alias" if isinstance(event, yaml.AliasEvent) else "anchor"
            mark = "*" if kind == "alias" else "&"
            raise DocumentError(f"line {event.start_mark.line + 1}: YAML anchors and aliases are not accepted "
                                f"(found the {kind} {mark}{_cut(str(event.anchor), 30)}); write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                except TypeError:
                    continue  # an unhashable key: the base class reports it
                if repeated:
                    raise DocumentError(f"line {key_node.start_mark.line + 1}: duplicate key {shown(key, 40)} "
                                        "(a mapping may name each key once)")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """The YAML document in `text` (safe types only); DocumentError for anything refused or invalid."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except DocumentError:
        raise
    except RecursionError:
        raise DocumentError("nested too deeply to read") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DocumentError(f"not valid YAML{where}: {_cut(str(problem), 120)}") from None
    except ValueError:  # a number too long to convert (int() refuses more than 4300 digits)
        raise DocumentError("holds a number too long to read") from None


# ---------------------------------------------------------------------------------------------
# JSON


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DocumentError(f"duplicate key {shown(key, 40)} (an object may name each key once)")
        out[key] = value
    return out


def parse_json(text: str) -> Any:
    """The JSON document in `text`; DocumentError for a repeated key, a number too long, or invalid JSON."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except DocumentError:
        raise
    except RecursionError:
        raise DocumentError("nested too deeply to read") from None
    except json.JSONDecodeError as exc:
        raise DocumentError(f"not valid JSON (line {exc.lineno}): {exc.msg}") from None
    except ValueError:  # a number too long to convert (int() refuses more than 4300 digits)
        raise DocumentError("holds a number too long to read") from None


# ---------------------------------------------------------------------------------------------
# Files


def read_document_text(path: Path) -> str:
    """The text of a configuration document, at most MAX_DOCUMENT_BYTES of UTF-8."""
    with open(path, "rb") as fh:
        data = fh.read(MAX_DOCUMENT_BYTES + 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"larger than {MAX_DOCUMENT_BYTES // 1024} KiB; a configuration is a few KB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def load_document(path: str | Path, *, yaml_format: bool | None = None) -> Any:
    """The parsed document at `path` (YAML by its suffix unless `yaml_format` says), read strictly.

    Raises OSError when the file cannot be opened, DocumentError for everything refused.
    """
    p = Path(path)
    text = read_document_text(p)
    use_yaml = is_yaml(p) if yaml_format is None else yaml_format
    return parse_yaml(text) if use_yaml else parse_json(text)
