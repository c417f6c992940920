"""notify-svc's storage: every SQL statement of the service, one module per set of
tables (``tables`` defines them). Rows become records here and records rows; what to
write is decided before."""
