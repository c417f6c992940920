"""Payment service of the dunning platform."""
