"""Invoice service of the dunning platform."""

#: The service's name: its ``ServiceSpec``'s, and its events' source (``/invoice-svc``).
NAME = "invoice-svc"
