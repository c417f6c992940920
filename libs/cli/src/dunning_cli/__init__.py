"""The ``dunning`` command: the platform's front door.

A client of the running services (HTTP) and of the bus (dead letters); it imports no
service package. ``dunning simulate`` is plugged in by dunning-svc through the
``dunning.commands`` entry-point group.
"""
