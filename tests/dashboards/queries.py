"""The PromQL a dashboard sends, with its variables replaced as Grafana replaces them.

Grafana substitutes template variables before a query reaches Prometheus: `$service` with
*All* selected becomes the variable's `allValue` (".+", so `service=~".+"` matches every
service), `$__rate_interval` and `$__range` become durations. These helpers do the same so
that a test can run each panel's queries through Prometheus's own query API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tests.dashboards.files import panels

#: A variable reference: $name, ${name} or ${name:format}.
VARIABLE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\$(\w+)")
#: Grafana's `label_values(metric{selector}, label)` variable query.
LABEL_VALUES = re.compile(r"^\s*label_values\((?P<series>.+),\s*(?P<label>\w+)\s*\)\s*$")
#: Grafana's own variables, as the query test sets them: rates over a minute (the test's
#: Prometheus scrapes every second), totals over the last hour (longer than a test run).
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__range": "1h", "__interval": "15s"}


@dataclass(frozen=True)
class PanelQuery:
    """One query of one panel, or of a variable (its title is then "variable NAME")."""

    dashboard: str
    title: str
    ref_id: str
    expr: str


class UnknownVariableError(LookupError):
    """A query names a variable the dashboard does not define."""


def dashboard_variables(dashboard: dict[str, Any]) -> dict[str, str]:
    """Each variable's value with *All* selected (its allValue), the datasource excluded."""
    values = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "datasource":
            continue
        if not variable.get("includeAll"):
            raise ValueError(f"variable {variable['name']} has no All option to test with")
        values[variable["name"]] = variable.get("allValue") or ".*"
    return values


def substitute(expr: str, variables: dict[str, str], builtins: dict[str, str]) -> str:
    """``expr`` with every ``$variable`` replaced; an unknown name raises."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in builtins:
            return builtins[name]
        if name in variables:
            return variables[name]
        raise UnknownVariableError(f"${name} in {expr!r}")

    return VARIABLE.sub(value, expr)


def variable_query(query: str) -> str:
    """The PromQL equivalent of a ``label_values(series, label)`` query: one series per value."""
    match = LABEL_VALUES.match(query)
    if match is None:
        raise ValueError(f"not a label_values(...) query: {query!r}")
    return f"count by ({match['label']}) ({match['series']})"


def dashboard_queries(name: str, dashboard: dict[str, Any]) -> list[PanelQuery]:
    """Every query of the dashboard, variables' label_values first, unsubstituted."""
    queries = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        queries.append(PanelQuery(name, f"variable {variable['name']}", "", variable_query(text)))
    for panel in panels(dashboard):
        for target in panel["targets"]:
            if target.get("hide"):
                continue
            queries.append(PanelQuery(name, panel["title"], target["refId"], target["expr"]))
    return queries
