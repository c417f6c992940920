"""Dunning service of the dunning platform."""
