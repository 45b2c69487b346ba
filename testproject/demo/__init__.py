"""The demo: a Celery job streams its progress to the browser, and a live topic to try by hand."""
