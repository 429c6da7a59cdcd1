"""Load a site spec: YAML -> validated `SiteSpec`, or every error at once with file:line:col.

    result = load_spec("specs/demo-site.yaml")
    if not result.ok:
        print(result.report())

Bad input never raises: it becomes `SpecError`s that point at the line to fix.
"""
from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel, ValidationError

from .checks import CheckContext, run_checks
from .root import SiteSpec
from .yamlsource import Mark, Problem, YamlDocument, display, read_yaml


@dataclass(frozen=True)
class SpecError:
    mark: Mark | None
    path: str  # "cameras[0].zones[1].polygon" ("" for the whole file)
    message: str
    file: str = ""
    warning: bool = False

    def __str__(self) -> str:
        where = str(self.mark) if self.mark else self.file
        label = "warning: " if self.warning else ""
        return f"{where}: {label}{self.path + ': ' if self.path else ''}{self.message}"


@dataclass
class LoadResult:
    path: Path
    spec: SiteSpec | None
    errors: list[SpecError] = field(default_factory=list)
    warnings: list[SpecError] = field(default_factory=list)
    document: YamlDocument | None = None

    @property
    def ok(self) -> bool:
        return self.spec is not None and not self.errors

    def report(self) -> str:
        return "\n".join(str(e) for e in [*self.errors, *self.warnings])


def format_path(loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def real_path(data: Any, loc) -> tuple:
    """Drop the parts of a pydantic loc that are not in the data (union and discriminator labels)."""
    path, node = [], data
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict | list) or node is None:
            # a label, or a key that is missing from the data: keep missing keys (strings that are fields)
            if isinstance(part, str) and _is_label(part):
                continue
            path.append(part)
            node = None
        # scalars: remaining parts are labels of the scalar's union members
    return tuple(path)


def _is_label(part: str) -> bool:
    return ":" in part or "[" in part or part in {"str", "int", "float", "bool", "list", "dict", "tuple"} or part.startswith(("literal", "constrained", "function-"))


def _mark_for(doc: YamlDocument, path: tuple, *, key: bool = False) -> Mark | None:
    if key and path in doc.keys:
        return doc.keys[path]
    for n in range(len(path), -1, -1):
        if path[:n] in doc.values:
            return doc.values[path[:n]]
    return None


def _unwrap(tp):
    """Yield the model classes an annotation may hold (through Optional, list, dict, Annotated, unions)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        yield from _unwrap(typing.get_args(tp)[0])
    elif origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            yield from _unwrap(arg)
    elif origin in (list, tuple, dict):
        yield from _unwrap(typing.get_args(tp)[-1])
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        yield tp


def _models_at(loc) -> list[type[BaseModel]]:
    """The model classes that own the mapping at `loc` (for did-you-mean on unknown keys)."""
    current: list[type[BaseModel]] = [SiteSpec]
    for part in loc:
        if not isinstance(part, str):
            continue
        if part.startswith("sink:"):
            kind = part.split(":", 1)[1]
            current = [m for m in current if kind in m.model_fields] or current
            continue
        nxt: list[type[BaseModel]] = []
        for model in current:
            for name, info in model.model_fields.items():
                if part in (name, info.alias):
                    nxt.extend(_unwrap(info.annotation))
        if nxt:
            current = nxt
    return current


def _field_names(models) -> list[str]:
    return sorted({info.alias or name for m in models for name, info in m.model_fields.items()})


def _message(err: dict, doc: YamlDocument, path: tuple) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        parent_models = _models_at(err["loc"][:-1])
        names = _field_names(parent_models)
        key = path[-1] if path else err["loc"][-1]
        close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.7)
        hint = f"; did you mean '{close[0]}'?" if close else (f" (allowed: {', '.join(names)})" if names else "")
        return f"unknown key '{key}'{hint}"
    if kind == "missing":
        return "required key is missing"
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
    if kind in ("literal_error", "enum") and "expected" in err.get("ctx", {}):
        given = err.get("input")
        options = [o.strip().strip("'") for o in str(err["ctx"]["expected"]).replace(" or ", ", ").split(",")]
        close = difflib.get_close_matches(str(given), options, n=1, cutoff=0.7)
        msg = f"'{given}' is not one of {err['ctx']['expected']}" + (f"; did you mean '{close[0]}'?" if close else "")
    return msg


def _pydantic_errors(exc: ValidationError, doc: YamlDocument) -> list[SpecError]:
    grouped: dict[tuple, list[tuple[tuple, dict]]] = {}
    for err in exc.errors(include_url=False):
        path = real_path(doc.data, err["loc"])
        if err["type"] == "extra_forbidden":
            path = path if path and path[-1] == err["loc"][-1] else (*path, err["loc"][-1])
        grouped.setdefault(path, []).append((path, err))
    out: list[SpecError] = []
    for path, errs in grouped.items():
        # one input failing every member of a union gives one error per member: keep the most specific
        if len(errs) > 1 and len({e["type"] for _, e in errs}) > 1:
            specific = [e for _, e in errs if e["type"] not in ("list_type", "string_type", "literal_error", "dict_type", "model_type", "tuple_type", "float_type", "int_type")]
            errs = [(path, e) for e in (specific[:1] or [errs[0][1]])]
            if not specific:
                msgs = sorted({_message(e, doc, path) for _, e in grouped[path]})
                out.append(SpecError(_mark_for(doc, path), format_path(path), " or ".join(msgs)))
                continue
        for _, err in errs:
            mark = _mark_for(doc, path, key=err["type"] == "extra_forbidden")
            out.append(SpecError(mark, format_path(path), _message(err, doc, path)))
    return out


def _problem(p: Problem, warning: bool = False) -> SpecError:
    return SpecError(p.mark, "", p.message, file=p.file, warning=warning)


def load_spec(path: str | Path, boards: dict | None = None, check_boards: bool = True) -> LoadResult:
    """Read, validate and cross-check a spec. `boards` maps board id -> profile (loaded when None)."""
    path = Path(path)
    if path.is_dir():
        return LoadResult(path, None, [SpecError(None, "", "is a folder; give the spec's YAML file", file=display(path))])
    doc = read_yaml(path)
    result = LoadResult(path, None, [_problem(p) for p in doc.problems], [_problem(w, True) for w in doc.warnings], doc)
    if result.errors:
        return result
    if doc.data is None:
        result.errors.append(SpecError(Mark(display(path), 1, 1), "", "the spec is empty; start with `site: {name: ..., timezone: ...}`"))
        return result
    if not isinstance(doc.data, dict):
        result.errors.append(SpecError(doc.values.get(()), "", f"a spec is a mapping of sections (site, cameras, ...), not a {type(doc.data).__name__}"))
        return result
    try:
        spec = SiteSpec.model_validate(doc.data)
    except ValidationError as exc:
        result.errors.extend(sorted(_pydantic_errors(exc, doc), key=_order))
        return result
    if boards is None and check_boards:
        from compiler.boards import load_board_profiles

        boards = load_board_profiles()
    ctx = CheckContext(boards, path.resolve().parent)
    for loc, message in run_checks(spec, ctx):
        result.errors.append(SpecError(_mark_for(doc, tuple(loc)), format_path(loc), message))
    result.errors.sort(key=_order)
    if not result.errors:
        result.spec = spec
    return result


def _order(e: SpecError):
    return (e.mark.file, e.mark.line, e.mark.col) if e.mark else (e.file, 0, 0)
