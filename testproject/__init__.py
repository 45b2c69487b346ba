"""A Django project for the tests and the demo."""
