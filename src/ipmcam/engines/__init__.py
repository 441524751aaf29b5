"""Makeup generator backends behind one interface (see engines.base)."""
