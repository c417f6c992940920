"""Invoice service of the dunning platform."""
