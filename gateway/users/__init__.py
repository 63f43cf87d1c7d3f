"""People who log in (agents, supervisors, admins): accounts, password hashing, sessions."""
