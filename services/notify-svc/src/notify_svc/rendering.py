"""Templates: the shipped notices per language, tenant overrides, and rendering them
with the request's data formatted for its locale.

Rendering runs in Jinja2's immutable sandbox with ``StrictUndefined``: a template
(shipped or a tenant's) sees only plain data (strings, numbers, lists, dicts), cannot
reach Python internals (``__class__`` and the like raise ``SecurityError``), and a
misspelt variable is an error instead of silently empty text. HTML is autoescaped:
text parts (intro, closing, payment instructions) are rendered as text and escaped
into the HTML layout through the ``paragraphs`` filter.
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_currency
from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

from dunning_events import Money, NotificationRequested
from notify_svc.domain import language_of

TEMPLATES = Path(__file__).parent / "templates"
#: Languages shipped: each has messages.toml, layout.txt, layout.html, sms.txt and
#: phrases.toml (what notify-svc fills in itself: the next step, default instructions).
LANGUAGES: tuple[str, ...] = ("en", "de")
#: The parts of a message template and of the layout, as overrides name them.
MESSAGE_PARTS: tuple[str, ...] = ("subject", "intro", "closing")
LAYOUT_PARTS: tuple[str, ...] = ("text", "html", "sms")
#: The template used for a name no language ships (policies are data: a segment may
#: name its own stages).
FALLBACK = "notice"
LAYOUT = "layout"

#: Largest template part a tenant may store, and largest rendered part: a template is
#: a message, not a program.
MAX_SOURCE = 20_000
MAX_OUTPUT = 200_000
#: ``range()`` in templates stops here, and loops nest at most this deep, so even a
#: hostile override renders in bounded time.
MAX_RANGE = 1_000
MAX_LOOP_DEPTH = 2

_KEY = re.compile(r"^(?P<name>[a-z][a-z0-9_]{0,49})\.(?P<language>[a-z]{2,3})$")


class TemplateProblem(ValueError):
    """A template that cannot be rendered; ``part`` names which, ``message`` says where."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(f"{part}: {message}")
        self.part = part
        self.message = message


@dataclass(frozen=True)
class Rendered:
    """A notice as it goes out."""

    subject: str
    text: str
    html: str
    sms: str


@dataclass(frozen=True)
class TemplateShown:
    """A template as it renders for a tenant: its parts (overridden or shipped), which
    parts the tenant overrides, and the sample notice rendered with it."""

    key: str
    parts: dict[str, str]
    overridden: list[str]
    preview: Rendered


# -- shipped templates -----------------------------------------------------------------


@cache
def shipped(language: str) -> dict[str, dict[str, str]]:
    """The shipped templates of a language: ``{name: {part: source}}``, the layout under
    ``"layout"``."""
    folder = TEMPLATES / language
    messages: dict[str, dict[str, str]] = tomllib.loads((folder / "messages.toml").read_text())
    messages[LAYOUT] = {
        "text": (folder / "layout.txt").read_text(),
        "html": (folder / "layout.html").read_text(),
        "sms": (folder / "sms.txt").read_text(),
    }
    return messages


@cache
def phrases(language: str) -> dict[str, Any]:
    """The phrases notify-svc itself puts into a notice in ``language``."""
    loaded: dict[str, Any] = tomllib.loads((TEMPLATES / language / "phrases.toml").read_text())
    return loaded


def next_step_text(request: NotificationRequested, language: str) -> str | None:
    """The notice's next step in ``language`` (``unsere letzte Mahnung in 15 Tagen``) when
    the request names the next stage and it has words here; else dunning-svc's text."""
    said = phrases(language)
    what = said["stages"].get(request.next_stage or "")
    if what is None or request.next_step_in_days is None:
        return request.next_step
    days = request.next_step_in_days
    phrase = said["next_step_one"] if days == 1 else said["next_step"]
    return str(phrase).format(what=what, days=days)


def parse_key(key: str) -> tuple[str, str]:
    """``overdue_1.de`` as ``("overdue_1", "de")``; ``ValueError`` when it is no key."""
    match = _KEY.fullmatch(key)
    if match is None or match["language"] not in LANGUAGES:
        raise ValueError(
            "a template key is <template>.<language>, e.g. overdue_1.de or layout.en; "
            f"languages: {', '.join(LANGUAGES)}"
        )
    return match["name"], match["language"]


def parts_of(key: str, overrides: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The parts a key renders with: the tenant's override of each part, else the shipped
    part (of the fallback template for a name no language ships)."""
    name, language = parse_key(key)
    ship = shipped(language)
    base = ship.get(name) or ship[FALLBACK]
    return {**base, **overrides.get(key, {})}


def part_names(key: str) -> tuple[str, ...]:
    """The parts a template key has."""
    return LAYOUT_PARTS if parse_key(key)[0] == LAYOUT else MESSAGE_PARTS


# -- the sandbox -----------------------------------------------------------------------


def _paragraphs(text: object) -> Markup:
    """Plain text as HTML paragraphs: escaped, blank lines split paragraphs, single
    newlines become ``<br>``."""
    blocks = [b.strip() for b in re.split(r"\n\s*\n", str(text)) if b.strip()]
    return Markup("\n").join(
        Markup("<p>{}</p>").format(Markup("<br>\n").join(escape(line) for line in b.split("\n")))
        for b in blocks
    )


def _range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise OverflowError(f"range() in a template is limited to {MAX_RANGE} items")
    return numbers


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with ``*`` and ``**`` bounded: ``'x' * 10**9`` or
    ``9 ** 9 ** 9`` would otherwise take the process's memory or CPU."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and (not isinstance(right, int | float) or abs(right) > 64):
            raise SecurityError("exponents in templates are limited to 64")
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                repeated = isinstance(sequence, str | list | tuple) and isinstance(times, int)
                if repeated and len(sequence) * times > MAX_OUTPUT:
                    raise SecurityError(f"a repeated text is limited to {MAX_OUTPUT}")
        return super().call_binop(context, operator, left, right)


def _environment(*, html: bool) -> ImmutableSandboxedEnvironment:
    env = _BoundedSandbox(
        autoescape=html,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["paragraphs"] = _paragraphs
    # Escaping is not the template's to switch off: contact names, invoice numbers and
    # next steps come from outside, and an override must not open the HTML to them.
    del env.filters["safe"]
    env.globals = {"range": _range, "dict": dict, "lipsum": None, "cycler": None}
    return env


_TEXT = _environment(html=False)
_HTML = _environment(html=True)


def _loop_depth(node: nodes.Node, depth: int = 0) -> int:
    deepest = depth
    for child in node.iter_child_nodes():
        inner = depth + 1 if isinstance(child, nodes.For) else depth
        deepest = max(deepest, _loop_depth(child, inner))
    return deepest


def check_source(part: str, source: str, *, html: bool = False) -> None:
    """Refuse a template part that cannot be parsed or that loops too deep."""
    _compiled(part, source, html)


@lru_cache(maxsize=1024)
def _compiled(part: str, source: str, html: bool) -> Template:
    # Compiling costs far more than rendering: each source is compiled once per process.
    if len(source) > MAX_SOURCE:
        raise TemplateProblem(part, f"is {len(source)} characters; at most {MAX_SOURCE}")
    env = _HTML if html else _TEXT
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateProblem(part, f"line {exc.lineno}: {exc.message}") from exc
    except RecursionError as exc:
        raise TemplateProblem(part, "nests too deep to be parsed") from exc
    if any(True for _ in tree.find_all(nodes.EvalContextModifier)):
        raise TemplateProblem(part, "autoescape cannot be switched off in a template")
    if _loop_depth(tree) > MAX_LOOP_DEPTH:
        raise TemplateProblem(part, f"loops may nest at most {MAX_LOOP_DEPTH} deep")
    try:
        return env.from_string(tree)
    except TemplateSyntaxError as exc:  # e.g. an unknown filter, found when compiling
        raise TemplateProblem(part, f"line {exc.lineno}: {exc.message}") from exc


def _render(part: str, source: str, context: Mapping[str, Any], *, html: bool = False) -> str:
    template = _compiled(part, source, html)
    try:
        output = template.render(context)
    except TemplateError as exc:
        # The sandbox's SecurityError and an undefined variable are TemplateErrors.
        raise TemplateProblem(part, f"{type(exc).__name__}: {exc.message or exc}") from exc
    except (ArithmeticError, TypeError, ValueError, LookupError, RecursionError) as exc:
        raise TemplateProblem(part, f"{type(exc).__name__}: {exc}") from exc
    if len(output) > MAX_OUTPUT:
        raise TemplateProblem(part, f"renders {len(output)} characters; at most {MAX_OUTPUT}")
    return output


def render(
    template: str,
    locale: str,
    context: Mapping[str, Any],
    overrides: Mapping[str, Mapping[str, str]],
) -> Rendered:
    """Render the notice ``template`` in the language of ``locale`` with ``context``
    (``build_context``), using the tenant's ``overrides``; ``TemplateProblem`` names the
    part that fails."""
    language = language_of(locale, LANGUAGES)
    name = template if re.fullmatch(r"[a-z][a-z0-9_]{0,49}", template) else FALLBACK
    message = parts_of(f"{name}.{language}", overrides)
    layout = parts_of(f"{LAYOUT}.{language}", overrides)
    values = {**context, "language": language}
    subject = _one_line(_render("subject", message["subject"], values))
    values["subject"] = subject
    values["intro"] = _render("intro", message["intro"], values).strip()
    values["closing"] = _render("closing", message["closing"], values).strip()
    text = _render("text", layout["text"], values)
    html = _render("html", layout["html"], values, html=True)
    sms = _one_line(_render("sms", layout["sms"], values))
    return Rendered(subject=subject, text=_tidy(text), html=html, sms=sms)


def _one_line(text: str) -> str:
    """Runs of ASCII white space as one space (a no-break space, as in ``1.250,00 €``,
    stays)."""
    return re.sub(r"[ \t\r\n]+", " ", text).strip()


def _tidy(text: str) -> str:
    """At most one blank line in a row, and a final newline."""
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


# -- the data a template sees ----------------------------------------------------------


def babel_locale(locale: str) -> Locale:
    """The Babel locale of a BCP 47 tag, falling back to its language, then English."""
    for candidate in (locale.replace("-", "_"), locale.split("-")[0].split("_")[0]):
        try:
            return Locale.parse(candidate)
        except (UnknownLocaleError, ValueError):
            continue
    return Locale.parse("en")


def money_text(money: Money, locale: Locale) -> str:
    """An amount as the locale writes it: ``€1,250.00`` (en), ``1.250,00 €`` (de)."""
    return str(format_currency(Decimal(money.amount), money.currency, locale=locale))


def date_text(day: date, locale: Locale) -> str:
    """A date as the locale writes it: ``Mar 3, 2026`` (en), ``03.03.2026`` (de)."""
    return str(format_date(day, format="medium", locale=locale))


DEFAULT_PROFILE: dict[str, Any] = {
    "company_name": "Accounts Receivable",
    "email": None,
    "phone": None,
    # What GET /v1/profile shows; a notice takes the instructions of its own language.
    "payment_instructions": phrases("en")["payment_instructions"],
    "payment_link": None,
    "webhook_url": None,
}

_LINK_FIELDS = frozenset({"tenant", "account_id", "invoice_ids"})


def check_payment_link(link: str) -> str:
    """A payment link template may use {tenant}, {account_id} and {invoice_ids} only."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(link) if f is not None}
    except ValueError as exc:
        raise ValueError(f"not a link template: {exc}") from exc
    unknown = fields - _LINK_FIELDS
    if unknown:
        raise ValueError(
            f"unknown placeholder {sorted(unknown)[0]!r}; use {{tenant}}, {{account_id}}, "
            "{invoice_ids}"
        )
    return link


def payment_link(
    link: str | None, tenant: str, account_id: str, invoice_ids: list[str]
) -> str | None:
    """The tenant's payment link with the account and invoice ids filled in (URL-quoted)."""
    if not link:
        return None
    values = {
        "tenant": quote(tenant, safe=""),
        "account_id": quote(account_id, safe=""),
        "invoice_ids": quote(",".join(invoice_ids), safe=","),
    }
    return link.format_map(values)


def build_context(
    tenant: str, request: NotificationRequested, profile: Mapping[str, Any]
) -> dict[str, Any]:
    """What a template sees: plain strings, numbers, lists and dicts, amounts and dates
    already formatted for the request's locale (docs/notify-svc.md lists them)."""
    locale = babel_locale(request.locale)
    language = language_of(request.locale, LANGUAGES)
    sender = {**DEFAULT_PROFILE, **profile}
    if not profile.get("payment_instructions"):
        sender["payment_instructions"] = phrases(language)["payment_instructions"]
    invoice_ids = [i.invoice_id for i in request.invoices]
    return {
        "tenant": tenant,
        "account_id": request.account_id,
        "account_name": request.account_name,
        "stage": request.stage,
        "template": request.template,
        "channel": request.channel,
        "locale": request.locale,
        "contact": {
            "name": request.recipient.name,
            "email": request.recipient.email,
            "phone": request.recipient.phone,
        },
        "invoices": [
            {
                "invoice_id": i.invoice_id,
                "number": i.number or i.invoice_id,
                "amount_due": money_text(i.amount_due, locale),
                "balance": money_text(i.balance, locale),
                "due_date": date_text(i.due_date, locale),
                "days_past_due": i.days_past_due,
            }
            for i in request.invoices
        ],
        "invoice_count": len(request.invoices),
        "total_overdue": [money_text(m, locale) for m in request.total_overdue],
        "total_open": [money_text(m, locale) for m in request.total_open],
        "fee": money_text(request.fee, locale) if request.fee else None,
        "next_step": next_step_text(request, language),
        "sender": {
            "company_name": sender["company_name"],
            "email": sender["email"],
            "phone": sender["phone"],
            "payment_instructions": sender["payment_instructions"],
        },
        "payment_link": payment_link(
            sender["payment_link"], tenant, request.account_id, invoice_ids
        ),
    }
