"""Control catalog, evidence queries, Celery tasks and PDF/CSV/OSCAL writers."""
