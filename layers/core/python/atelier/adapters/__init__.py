"""Adapters that implement the ports (atelier.ports) on real services. Imported only by
atelier.entrypoints."""
