"""A production-shaped Airflow (PostgreSQL, Redis, CeleryExecutor, two triggerers) and a chaos soak on it."""
