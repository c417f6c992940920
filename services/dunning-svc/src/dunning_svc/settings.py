"""dunning-svc's own settings, on top of the settings every service shares.

dunning-svc reads no ``DUNNING_*`` variable of its own today: its policies are data
(``PUT /v1/policies/{segment}``), not settings. The class is its place for one, so
the service has the same shape as the others (docs/architecture.md, "The map").
"""

from __future__ import annotations

from dunning_runtime.settings import ServiceSettings


class DunningSettings(ServiceSettings):
    """``ServiceSettings`` as they are: dunning-svc adds no field yet."""
