"""Self-healing of the stack's services: a pure policy (policy.py) and its state file."""
