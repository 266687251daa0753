"""Operator-side tools (devnet, demo). Not part of the device core's runtime path."""
