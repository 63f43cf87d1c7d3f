"""PostgreSQL access: the pool, named queries, migrations."""
