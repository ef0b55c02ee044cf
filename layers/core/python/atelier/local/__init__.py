"""The local stack: real servers on loopback, resources from template.yaml, an event dispatcher."""
