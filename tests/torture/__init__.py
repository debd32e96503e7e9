"""Torture tests: the service under crashes, database restarts, model faults, lost and doubled
webhooks, and hostile input. They run on their own stack (they restart its PostgreSQL)."""
