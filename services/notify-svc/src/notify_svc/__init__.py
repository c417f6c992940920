"""Notification service of the dunning platform."""
