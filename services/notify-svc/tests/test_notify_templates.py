"""Tenant template overrides: validated by rendering a sample, sandboxed, used for the
tenant's next notices; and the pure rendering rules."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from notify_fixtures import ACME, GLOBEX, SmtpServer, publish, settled, three_invoices

from notify_svc import domain, rendering
from notify_svc.commands import templates as commands


async def test_an_override_is_validated_previewed_used_and_dropped(
    client: httpx.AsyncClient, smtp: SmtpServer, notify_settings: Any
) -> None:
    shipped = (await client.get("/v1/templates/overdue_1.de", headers=ACME)).json()
    assert shipped["overridden"] == [] and "Zahlungserinnerung" in shipped["preview"]["subject"]
    override = {"subject": "Offene Posten: {{ total_overdue | join(', ') }} - {{ account_name }}"}
    put = await client.put("/v1/templates/overdue_1.de", json=override, headers=ACME)
    assert put.status_code == 200, put.text
    assert put.json()["overridden"] == ["subject"]
    assert put.json()["preview"]["subject"] == "Offene Posten: 3.750,00\xa0€ - ACME GmbH"
    # Only this tenant's notices change.
    globex = (await client.get("/v1/templates/overdue_1.de", headers=GLOBEX)).json()
    assert globex["overridden"] == []

    await publish(notify_settings, three_invoices("de", notification_id="TPL-1"))
    assert (await settled(client, "TPL-1"))["status"] == "sent"
    assert smtp.messages[0]["Subject"] == "Offene Posten: 4.230,50\xa0€ - ACME GmbH"

    assert (await client.delete("/v1/templates/overdue_1.de", headers=ACME)).status_code == 204
    again = (await client.get("/v1/templates/overdue_1.de", headers=ACME)).json()
    assert again["overridden"] == []
    keys = [t["key"] for t in (await client.get("/v1/templates", headers=ACME)).json()["items"]]
    assert {"overdue_1.en", "final_notice.de", "layout.de"} <= set(keys)


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"subject": "{{ contact.__class__.__mro__ }}"}, "body.subject", "unsafe"),
        ({"intro": "{{ ''.__class__.__base__.__subclasses__() }}"}, "body.intro", "unsafe"),
        ({"closing": "{{ range.__globals__ }}"}, "body.closing", "unsafe"),
        ({"intro": "Hallo\n{% if %}"}, "body.intro", "line 2"),
        ({"intro": "{{ no_such_variable }}"}, "body.intro", "no_such_variable"),
        (
            {
                "intro": "{% for a in range(9) %}{% for b in range(9) %}{% for c in range(9) %}x{% endfor %}{% endfor %}{% endfor %}"
            },
            "body.intro",
            "nest",
        ),
        ({"intro": "{% for a in range(100000) %}x{% endfor %}"}, "body.intro", "range"),
        ({"html": "<p>x</p>"}, "body.html", "layout"),
        ({"intro": "{{ contact.name | safe }}"}, "body.intro", "safe"),
        ({"intro": "{{ contact.name | no_such_filter }}"}, "body.intro", "no_such_filter"),
        ({"intro": "{% include 'x' %}"}, "body.intro", "loader"),
        ({"intro": "{{ 'x' * 1000000000 }}"}, "body.intro", "limited"),
        ({"intro": "{{ 9 ** (9 ** 9) }}"}, "body.intro", "limited"),
        ({"intro": "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}"}, "body.intro", "deep"),
        ({"intro": "{{ invoices[0].balance / 0 }}"}, "body.intro", "Error"),
        (
            {"intro": "{% autoescape false %}{{ contact.name }}{% endautoescape %}"},
            "body.intro",
            "autoescape",
        ),
    ],
)
async def test_a_hostile_or_broken_override_is_a_422_that_says_where(
    client: httpx.AsyncClient, body: dict[str, str], field: str, says: str
) -> None:
    response = await client.put("/v1/templates/overdue_1.de", json=body, headers=ACME)
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == field and says in error["message"], error
    assert (await client.get("/v1/templates/overdue_1.de", headers=ACME)).json()["overridden"] == []


async def test_unknown_template_keys_are_refused(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/templates/overdue_1.fr", headers=ACME)).status_code == 422
    assert (await client.get("/v1/templates/Overdue", headers=ACME)).status_code == 422


def test_every_shipped_template_renders_in_both_languages() -> None:
    for language in rendering.LANGUAGES:
        for name in rendering.shipped(language):
            if name == rendering.LAYOUT:
                continue
            sample = commands.sample_request(name, language)
            context = rendering.build_context("acme", sample, {})
            out = rendering.render(name, language, context, {})
            assert out.subject and "2026-1003" in out.text and "2026-1003" in out.html
            assert out.sms and "\n" not in out.subject


def test_names_and_data_are_escaped_in_html_but_not_in_text() -> None:
    sample = commands.sample_request("overdue_1", "en")
    hostile = sample.model_copy(
        update={"recipient": sample.recipient.model_copy(update={"name": "<script>x</script>"})}
    )
    out = rendering.render("overdue_1", "en", rendering.build_context("acme", hostile, {}), {})
    assert "<script>" not in out.html and "&lt;script&gt;" in out.html
    assert out.text.startswith("Dear <script>x</script>,")


def test_the_next_step_is_named_in_the_notice_s_language() -> None:
    notice = three_invoices("de-DE", next_stage="final_notice", next_step_in_days=15)
    assert rendering.next_step_text(notice, "de") == "unsere letzte Mahnung in 15 Tagen"
    assert rendering.next_step_text(notice, "en") == "our final notice in 15 days"
    # One day away reads as German and English say it, not "in 1 Tagen" / "in 1 days".
    tomorrow = notice.model_copy(update={"next_step_in_days": 1})
    assert rendering.next_step_text(tomorrow, "de") == "unsere letzte Mahnung in einem Tag"
    assert rendering.next_step_text(tomorrow, "en") == "our final notice in one day"
    # A stage a policy made up has no words here: dunning-svc's own text stands.
    custom = three_invoices("de-DE", next_stage="legal_review", next_step="legal review in 5 days")
    assert rendering.next_step_text(custom, "de") == "legal review in 5 days"


def test_an_unknown_template_name_falls_back_to_the_generic_notice() -> None:
    sample = commands.sample_request("overdue_1", "de")
    out = rendering.render(
        "partner_step_7", "de-AT", rendering.build_context("acme", sample, {}), {}
    )
    assert out.subject.startswith("Ihr Kundenkonto")


@given(st.from_regex(r"[A-Za-z0-9._%+-]{1,20}@[A-Za-z0-9-]{1,20}\.[A-Za-z]{2,6}", fullmatch=True))
def test_an_email_address_normalizes_to_one_contact(address: str) -> None:
    normalized = domain.normalize_address(address)
    assert normalized == address.lower() == domain.normalize_address(address.upper())
    assert domain.normalize_address(normalized) == normalized
    assert domain.channels_of(normalized) == ("email",)


@given(st.from_regex(r"\+?[0-9][0-9 ()./-]{3,29}", fullmatch=True))
def test_a_phone_number_normalizes_to_plus_and_digits(phone: str) -> None:
    digits = "".join(c for c in phone if c.isdigit())
    if len(digits) < 4:
        return
    normalized = domain.normalize_address(phone)
    assert normalized.lstrip("+") == digits
    assert domain.normalize_address(normalized) == normalized


@given(
    st.integers(0, 50),
    st.integers(0, 50),
    st.booleans(),
    st.frozensets(st.sampled_from(["email", "sms", "task"])),
)
def test_suppression_rules(
    stage_sequence: int, current: int, has_address: bool, opted: frozenset[str]
) -> None:
    sample = commands.sample_request("overdue_1", "en").model_copy(
        update={"stage_sequence": stage_sequence}
    )
    decision = domain.suppression(
        sample,
        address="ap@acme.example" if has_address else None,
        opted_out_channels=opted,
        current_sequence=current,
    )
    if stage_sequence < current:
        assert decision is not None and decision.reason == "obsolete"
    elif not has_address:
        assert decision is not None and decision.reason == "no_address"
    elif "email" in opted:
        assert decision is not None and decision.reason == "opted_out"
    else:
        assert decision is None


def test_at_most_one_duplicate_after_interrupted_sends() -> None:
    assert domain.plan_send(interrupted=False, possible_duplicate=False) == "send"
    assert domain.plan_send(interrupted=True, possible_duplicate=False) == "send_possible_duplicate"
    assert domain.plan_send(interrupted=True, possible_duplicate=True) == "give_up"


@given(st.text(min_size=1, max_size=100))
def test_the_message_id_is_stable_and_well_formed(notification_id: str) -> None:
    first = domain.message_id("acme", notification_id, "dunning.example")
    assert first == domain.message_id("acme", notification_id, "dunning.example")
    assert first != domain.message_id("globex", notification_id, "dunning.example")
    assert first.startswith("<ntf.") and first.endswith("@dunning.example>")


_NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40
).filter(str.strip)


@st.composite
def notices(draw: st.DrawFn) -> Any:
    from decimal import Decimal

    from dunning_events import Money

    currency = draw(st.sampled_from(["EUR", "USD", "JPY", "CHF"]))
    places = 0 if currency == "JPY" else 2
    count = draw(st.integers(1, 5))
    invoices = []
    total = Decimal(0)
    for n in range(count):
        minor = draw(st.integers(1, 10**9))
        amount = Decimal(minor).scaleb(-places)
        total += amount
        invoices.append(
            {
                "invoice_id": f"INV-{n}",
                "number": draw(_NAMES) if draw(st.booleans()) else None,
                "amount_due": Money(amount=amount, currency=currency),
                "balance": Money(amount=amount, currency=currency),
                "due_date": f"2026-0{draw(st.integers(1, 9))}-1{draw(st.integers(0, 9))}",
                "days_past_due": draw(st.integers(-5, 400)),
            }
        )
    base = commands.sample_request(
        draw(st.sampled_from(["overdue_1", "final_notice", "x_step"])), "en"
    )
    return base.model_validate(
        {
            **base.model_dump(),
            "locale": draw(st.sampled_from(["en", "en-GB", "de-DE", "de-CH", "fr-FR", "ja"])),
            "recipient": {"name": draw(_NAMES)},
            "next_step": draw(st.none() | _NAMES),
            "invoices": invoices,
            "total_overdue": [Money(amount=total, currency=currency)],
            "total_open": [Money(amount=total, currency=currency)],
        }
    )


@given(notices())
def test_any_notice_renders_listing_every_invoice_and_the_total(notice: Any) -> None:
    from markupsafe import escape

    context = rendering.build_context("acme", notice, {})
    out = rendering.render(notice.template, notice.locale, context, {})
    assert "\n" not in out.subject and out.sms
    for shown in context["invoices"]:
        assert shown["number"] in out.text and shown["balance"] in out.text
        assert str(escape(shown["number"])) in out.html
    assert context["total_overdue"][0] in out.text
    assert context["contact"]["name"] in out.text
