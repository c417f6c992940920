"""A msgspec mirror of each event class, derived at import from its pydantic schema.

The pydantic classes stay the one definition of every event. From each class's core
schema (what pydantic itself validates with) this module derives a msgspec Struct
that is at least as strict as the schema's native checks (types, lengths, bounds,
literals, unknown fields), plus the schema's own Python functions (field validators,
model validators, before validators), which it calls in the order pydantic does. A
payload the mirror accepts is then built as the pydantic instance without a second
validation: every value, the fields set and the validators' effects as
``model_validate_json(raw, strict=True)`` gives them.

Where the mirror refuses (or meets an exception), the caller asks pydantic, which
gives the verdict and its reason, so refusals are never the mirror's. A schema node
this module does not know (a union, a wrap or plain validator, an alias, ...) leaves
its class without a mirror: that class is always validated by pydantic.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, cast

import msgspec
from pydantic import BaseModel
from pydantic_core import SchemaValidator

from dunning_events.common import _addressable
from dunning_events.envelope import (
    E,
    set_dict,
    set_extra,
    set_fields_set,
    set_private,
)
from dunning_events.money import MINOR_UNITS, Money, _check_currency, _to_decimal
from dunning_events.registry import EVENT_CLASSES

__all__ = ["MIRRORS", "Mirror", "mirror_of", "validate_payload"]

#: A finishing step: the msgspec value (and the enclosing model's values so far) to
#: the value pydantic would give; raises where pydantic would refuse.
Finish = Callable[[Any, dict[str, Any]], Any]


class Unsupported(Exception):
    """A schema node the mirror cannot reproduce exactly."""


class _Info:
    """What a with-info validator reads of pydantic's ``ValidationInfo``."""

    __slots__ = ("config", "context", "data", "field_name", "mode")

    def __init__(self, data: dict[str, Any], field_name: str | None) -> None:
        self.data = data
        self.field_name = field_name
        self.mode = "json"
        self.context = None
        self.config = None


# Defaults pydantic hands out as they are (immutable), so sharing them is safe.
_IMMUTABLE = (type(None), str, int, bool, Decimal, date, datetime, tuple, frozenset)

_new = object.__new__


class Mirror:
    """The msgspec decoder of one event class and the step that builds its instance."""

    def __init__(self, cls: type[BaseModel]) -> None:
        schema = cast("dict[str, Any]", cls.__pydantic_core_schema__)
        gate, finish = _Translation(schema).node(schema)
        if finish is None:
            raise Unsupported(f"{cls.__name__}: not a model")
        self.finish: Finish = finish
        self.decoder = msgspec.json.Decoder(gate)

    def decode(self, raw: bytes) -> Any:
        """The pydantic instance of ``raw``; raises where the mirror does not accept it."""
        return self.finish(self.decoder.decode(raw), {})


class _Translation:
    """The translation of one core schema, its definitions resolved by reference."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.definitions: dict[str, dict[str, Any]] = {}
        self.done: dict[str, tuple[Any, Finish | None]] = {}
        self.open: set[str] = set()
        self.collect(schema)

    def collect(self, schema: dict[str, Any]) -> None:
        if schema.get("type") == "definitions":
            for definition in schema["definitions"]:
                self.definitions[definition["ref"]] = definition
            self.collect(schema["schema"])

    def node(self, schema: dict[str, Any]) -> tuple[Any, Finish | None]:
        """(msgspec type, finishing step or None for "as decoded") of a core schema node."""
        kind = schema["type"]
        handler = getattr(self, "node_" + kind.replace("-", "_"), None)
        if handler is None:
            raise Unsupported(kind)
        result: tuple[Any, Finish | None] = handler(schema)
        return result

    def node_definitions(self, schema: dict[str, Any]) -> tuple[Any, Finish | None]:
        return self.node(schema["schema"])

    def node_definition_ref(self, schema: dict[str, Any]) -> tuple[Any, Finish | None]:
        ref = schema["schema_ref"]
        if ref in self.done:
            return self.done[ref]
        if ref in self.open or ref not in self.definitions:
            raise Unsupported(f"recursive or unknown reference {ref}")
        self.open.add(ref)
        self.done[ref] = self.node(self.definitions[ref])
        return self.done[ref]

    def node_str(self, schema: dict[str, Any]) -> tuple[Any, Finish | None]:
        _only(schema, {"min_length", "max_length", "pattern", "strict"})
        meta: dict[str, Any] = {
            k: schema[k] for k in ("min_length", "max_length") if schema.get(k) is not None
        }
        if schema.get("pattern") is not None:
            meta["pattern"] = _python_pattern(schema["pattern"])
        return (Annotated[str, msgspec.Meta(**meta)] if meta else str), None

    def node_int(self, schema: dict[str, Any]) -> tuple[Any, Finish | None]:
        _only(schema, {"ge", "gt", "le", "lt", "multiple_of", "strict"})
        meta = {
            k: schema[k]
            for k in ("ge", "gt", "le", "lt", "multiple_of")
            if schema.get(k) is not None
        }
        return (Annotated[int, msgspec.Meta(**meta)] if meta else int), None

    def node_bool(self, schema: dict[str, Any]) -> tuple[Any, Finish | None]:
        _only(schema, {"strict"})
        return bool, None

    def node_date(self, schema: dict[str, Any]) -> tuple[Any, Finish | None]:
        # msgspec reads only RFC 3339 full dates (YYYY-MM-DD), which pydantic accepts.
        _only(schema, {"strict"})
        return date, None

    def node_datetime(self, schema: dict[str, Any]) -> tuple[Any, Finish | None]:
        # Texts of instants have many spellings: pydantic's own validator of this node
        # reads the string, so the instant and its offset are exactly pydantic's.
        _only(schema, {"strict", "tz_constraint", "microseconds_precision"})
        validator = SchemaValidator(schema)
        encode = msgspec.json.encode

        def finish(value: str, _data: dict[str, Any]) -> Any:
            return validator.validate_json(encode(value), strict=True)

        return str, finish

    def node_literal(self, schema: dict[str, Any]) -> tuple[Any, Finish | None]:
        _only(schema, {"expected"})
        expected = tuple(schema["expected"])
        kinds = {type(value) for value in expected}
        if kinds not in ({str}, {int}):
            raise Unsupported("a literal of other values than strings or integers")
        return Literal[expected], None

    def node_nullable(self, schema: dict[str, Any]) -> tuple[Any, Finish | None]:
        _only(schema, {"schema", "strict"})
        gate, inner = self.node(schema["schema"])
        if inner is None:
            return gate | None, None

        def finish(value: Any, data: dict[str, Any]) -> Any:
            return None if value is None else inner(value, data)

        return gate | None, finish

    def node_list(self, schema: dict[str, Any]) -> tuple[Any, Finish | None]:
        _only(schema, {"items_schema", "min_length", "max_length", "strict"})
        gate, inner = self.node(schema["items_schema"])
        meta = {k: schema[k] for k in ("min_length", "max_length") if schema.get(k) is not None}
        listed = Annotated[list[gate], msgspec.Meta(**meta)] if meta else list[gate]  # type: ignore[valid-type]
        if inner is None:
            return listed, None

        def finish(value: list[Any], data: dict[str, Any]) -> list[Any]:
            return [inner(item, data) for item in value]

        return listed, finish

    def node_function_after(self, schema: dict[str, Any]) -> tuple[Any, Finish | None]:
        _only(schema, {"function", "schema", "serialization"})
        function = schema["function"]["function"]
        native = NATIVE.get(function)
        inner_schema = schema["schema"]
        if native is not None and inner_schema["type"] == "str":
            # The validator's verdict as a msgspec constraint (it returns its input),
            # with the string's own lengths.
            _only(inner_schema, {"min_length", "max_length", "strict"})
            lengths = {
                k: inner_schema[k]
                for k in ("min_length", "max_length")
                if inner_schema.get(k) is not None
            }
            return Annotated[native, msgspec.Meta(**lengths)], None
        if _is_amount_in_currency(function, inner_schema):
            return str, _amount_in_currency
        gate, inner = self.node(schema["schema"])
        if schema["function"]["type"] == "with-info":
            field_name = schema["function"].get("field_name")

            def finish_info(value: Any, data: dict[str, Any]) -> Any:
                if inner is not None:
                    value = inner(value, data)
                return function(value, _Info(data, field_name))

            return gate, finish_info

        if inner is None:
            return gate, _plain(function)
        inner_plain = getattr(inner, "plain", None)

        def finish(value: Any, data: dict[str, Any]) -> Any:
            return function(inner(value, data))

        if inner_plain is not None:
            return gate, _plain(lambda value: function(inner_plain(value)))
        return gate, finish

    def node_function_before(self, schema: dict[str, Any]) -> tuple[Any, Finish | None]:
        # Only a before validator of JSON strings into a plain Decimal (the amounts):
        # pydantic then checks its Decimal in strict Python mode, as below.
        _only(schema, {"function", "schema", "serialization"})
        if (
            schema["function"]["type"] != "no-info"
            or set(schema["schema"]) - {"type"}
            or (schema["schema"]["type"] != "decimal")
        ):
            raise Unsupported("a before validator of anything but a plain decimal")
        function = schema["function"]["function"]

        def finish(value: str, _data: dict[str, Any]) -> Decimal:
            result = function(value)
            if type(result) is not Decimal or not result.is_finite():
                raise ValueError("not a finite Decimal")
            return result

        return str, finish

    def node_default(self, schema: dict[str, Any]) -> tuple[Any, Finish | None]:
        # Handled by the model's fields (an absent field takes the default unvalidated).
        raise Unsupported("a default outside a model field")

    def node_model(self, schema: dict[str, Any]) -> tuple[Any, Finish | None]:
        _only(
            schema,
            {"cls", "schema", "config", "custom_init", "root_model", "post_init"},
        )
        cls = schema["cls"]
        config = schema.get("config", {})
        extra = config.get("extra_fields_behavior", "ignore")
        if (
            schema.get("custom_init")
            or schema.get("root_model")
            or schema.get("post_init")
            or extra not in ("forbid", "ignore")
            or cls.__private_attributes__
            or set(config) - {"extra_fields_behavior", "title"}
        ):
            raise Unsupported(f"{cls.__name__}: a model with more than fields")
        return self.fields(cls, schema["schema"], forbid=extra == "forbid")

    def fields(
        self, cls: type[BaseModel], schema: dict[str, Any], *, forbid: bool
    ) -> tuple[Any, Finish | None]:
        _only(schema, {"fields", "model_name", "computed_fields"})
        if schema["type"] != "model-fields":
            raise Unsupported(schema["type"])
        definitions: list[tuple[Any, ...]] = []
        plan = []
        for name, field in schema["fields"].items():
            _only(field, {"schema", "metadata", "frozen", "serialization_exclude"})
            inner = field["schema"]
            default: tuple[str, Any] | None = None
            if inner["type"] == "default":
                _only(inner, {"schema", "default", "default_factory", "default_factory_takes_data"})
                if inner.get("default_factory_takes_data"):
                    raise Unsupported(f"{cls.__name__}.{name}: a factory of the other fields")
                if "default_factory" in inner:
                    default = ("factory", inner["default_factory"])
                elif isinstance(inner["default"], _IMMUTABLE):
                    default = ("value", inner["default"])
                else:
                    raise Unsupported(f"{cls.__name__}.{name}: a mutable default")
                inner = inner["schema"]
            gate, finish = self.node(inner)
            if default is None:
                definitions.append((name, gate))
            else:
                definitions.append((name, gate | msgspec.UnsetType, msgspec.UNSET))
            plan.append((name, finish, default))
        struct = msgspec.defstruct(
            f"{cls.__name__}Mirror", definitions, kw_only=True, forbid_unknown_fields=forbid
        )
        return struct, _builder(cls, tuple(plan))


def _builder(cls: type[BaseModel], plan: tuple[tuple[str, Any, Any], ...]) -> Finish:
    """The step that turns a decoded struct into ``cls``'s instance, fields in order:
    generated as straight-line code, as a per-field loop costs more than the checks."""
    namespace: dict[str, Any] = {
        "cls": cls,
        "new": _new,
        "set_dict": set_dict,
        "set_fields_set": set_fields_set,
        "set_extra": set_extra,
        "set_private": set_private,
        "unset": msgspec.UNSET,
    }
    # The fields set: every required field, and the defaulted ones the document gives.
    namespace["required"] = frozenset(name for name, _, default in plan if default is None)
    lines = ["def build(struct, _data):", "    values = {}", "    given = set(required)"]
    for index, (name, finish, default) in enumerate(plan):
        plain = getattr(finish, "plain", None)
        if finish is None:
            made = "value"
        elif plain is not None:
            namespace[f"plain{index}"] = plain
            made = f"plain{index}(value)"
        else:
            namespace[f"finish{index}"] = finish
            made = f"finish{index}(value, values)"
        lines.append(f"    value = struct.{name}")
        if default is None:
            lines.append(f"    values[{name!r}] = {made}")
            continue
        kind, namespace[f"default{index}"] = default
        call = "()" if kind == "factory" else ""
        lines += [
            "    if value is unset:",
            f"        values[{name!r}] = default{index}{call}",
            "    else:",
            f"        given.add({name!r})",
            f"        values[{name!r}] = {made}",
        ]
    lines += [
        "    instance = new(cls)",
        "    set_dict(instance, values)",
        "    set_fields_set(instance, given)",
        "    set_extra(instance, None)",
        "    set_private(instance, None)",
        "    return instance",
    ]
    exec("\n".join(lines), namespace)  # noqa: S102 - code made of field names, above
    build: Finish = namespace["build"]
    return build


# -- Money's amount ------------------------------------------------------------------
# Money.amount is _to_decimal (before) then Money._fits_currency (with the currency).
# For the text the wire carries, a plain number with exactly the currency's places and
# at most 15 digits before the point, that chain is Decimal(text) (a zero's sign
# dropped): _to_decimal's pattern matches, _bounded's limits hold, and the exponent is
# already the currency's, so _fits_currency returns it. Any other text is left to
# pydantic (the mirror refuses it).
_AMOUNT_TEXTS = {
    places: re.compile(r"-?[0-9]{1,15}" + (rf"\.[0-9]{{{places}}}" if places else ""))
    for places in set(MINOR_UNITS.values())
}
_CURRENCY_PLACES = {code: _AMOUNT_TEXTS[places].fullmatch for code, places in MINOR_UNITS.items()}


def _is_amount_in_currency(function: Any, schema: dict[str, Any]) -> bool:
    """Whether ``function`` over ``schema`` is Money's amount chain, exactly."""
    return (
        getattr(function, "__func__", None) is Money._fits_currency.__func__  # type: ignore[attr-defined]
        and schema.get("type") == "function-before"
        and schema["function"] == {"type": "no-info", "function": _to_decimal}
        and schema["schema"] == {"type": "decimal"}
    )


def _amount_in_currency(text: str, data: dict[str, Any]) -> Decimal:
    if _CURRENCY_PLACES[data["currency"]](text) is None:
        raise ValueError("not the wire's plain amount text")
    amount = Decimal(text)
    return amount.copy_abs() if amount.is_zero() else amount


def _plain(function: Callable[[Any], Any]) -> Finish:
    """A finishing step that only needs the value: ``function(value)``, which the
    generated builders call directly (its ``plain`` attribute)."""

    def finish(value: Any, _data: dict[str, Any]) -> Any:
        return function(value)

    finish.plain = function  # type: ignore[attr-defined]
    return finish


def _only(schema: dict[str, Any], known: set[str]) -> None:
    """Refuse a node with keys that could change its verdict and are not handled."""
    unknown = set(schema) - known - {"type", "metadata", "ref", "serialization"}
    if unknown:
        raise Unsupported(f"{schema['type']} with {sorted(unknown)}")


def _python_pattern(pattern: str) -> str:
    # pydantic matches with Rust's regex, where "$" is the end of the text; in Python
    # "$" also matches before a final newline, so the anchor becomes "\Z". Patterns
    # with "$" elsewhere, or constructs whose meaning may differ, are not mirrored.
    if not pattern.endswith("$") or pattern.endswith("\\$") or "$" in pattern[:-1]:
        raise Unsupported(f"pattern {pattern!r}")
    if re.search(r"\\[bBpPdDwWuUxX]|\(\?", pattern):
        raise Unsupported(f"pattern {pattern!r}")
    return pattern[:-1] + r"\Z"


#: Validators of strings that return their input or refuse it, and the msgspec type
#: that accepts exactly the strings they accept (both sides are Python's ``re``).
NATIVE: dict[Callable[[Any], Any], Any] = {
    _addressable: Annotated[str, msgspec.Meta(pattern=r"^(?!\.\.?\Z)[A-Za-z0-9_.:-]+\Z")],
    _check_currency: Literal[tuple(MINOR_UNITS)],
}


def mirror_of(cls: type[BaseModel]) -> Mirror | None:
    """The mirror of ``cls``, or None when its schema has a node the mirror does not know."""
    try:
        return Mirror(cls)
    except Unsupported:
        return None


#: The mirror of every registered event class that has one.
MIRRORS: dict[type[BaseModel], Mirror] = {
    cls: mirror for cls in EVENT_CLASSES if (mirror := mirror_of(cls)) is not None
}


def validate_payload(cls: type[E], raw: bytes) -> E:
    """``cls.model_validate_json(raw, strict=True)``: the same instance, the same
    ``ValidationError``; through ``cls``'s mirror where it accepts ``raw``."""
    mirror = MIRRORS.get(cls)
    if mirror is not None:
        try:
            event: E = mirror.decode(raw)
        except Exception:  # noqa: S110 - whatever the mirror refuses, pydantic decides below
            pass
        else:
            return event
    return cls.model_validate_json(raw, strict=True)
