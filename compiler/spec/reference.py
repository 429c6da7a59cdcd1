"""The spec reference (Markdown), generated from the models' field descriptions."""
from __future__ import annotations

import types
import typing
from typing import Union

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .root import SiteSpec


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        tags = [n for n in names]
        return " \\| ".join(dict.fromkeys(tags)) + (" (optional)" if type(None) in args else "")
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is tuple:
        return "[" + ", ".join(_type_name(a) for a in args) + "]"
    if origin is dict:
        return f"map {_type_name(args[0])} → {_type_name(args[1])}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"[{tp.__name__}](#{tp.__name__.lower()})"
    return getattr(tp, "__name__", str(tp))


def _models(tp, seen: list) -> None:
    origin = typing.get_origin(tp)
    if origin is not None:
        for a in typing.get_args(tp):
            _models(a, seen)
    elif isinstance(tp, type) and issubclass(tp, BaseModel) and tp not in seen:
        seen.append(tp)
        for info in tp.model_fields.values():
            _models(info.annotation, seen)


def _default(info) -> str:
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        value = info.default_factory()
        if isinstance(value, BaseModel):
            return "(defaults)"
        if isinstance(value, list) and value and isinstance(value[0], BaseModel):
            return f"{len(value)} entry with its defaults" if len(value) == 1 else f"{len(value)} entries"
        return f"`{value}`"
    if info.default is PydanticUndefined or info.default is None:
        return "–"
    return f"`{info.default}`"


def markdown() -> str:
    models: list[type[BaseModel]] = []
    _models(SiteSpec, models)
    out = [
        "# Site spec reference",
        "",
        "Generated from the schema's field descriptions by `python build.py schema --markdown -o docs/spec-reference.md`;",
        "do not edit by hand. The JSON Schema for editors is `schema/site-spec.schema.json`.",
        "",
    ]
    for model in models:
        out += [f"## {model.__name__}", "", (model.__doc__ or "").strip().split("\n\n")[0], ""]
        out += ["| key | type | default | description |", "|---|---|---|---|"]
        for name, info in model.model_fields.items():
            key = info.alias or name
            desc = (info.description or "").replace("|", "\\|")
            out.append(f"| `{key}` | {_type_name(info.annotation)} | {_default(info)} | {desc} |")
        out.append("")
    return "\n".join(out).replace("\n\n\n", "\n\n")
