"""Shared service runtime of the dunning platform.

One home for what every service needs: settings (``settings``), the clock
(``clock``), the store (``db``, ``migrations``), the bus port and adapters
(``bus``), the outbox and inbox (``outbox``, ``inbox``), the consumer runtime
(``consumer``), telemetry, problem+json errors, API-key auth, and the app
factory (``app``) that turns a ``ServiceSpec`` into a running service.
"""
