"""Observability checks: is what the chart ships for Prometheus and Grafana sound, and live?

Offline (``ci chart check``): every PrometheusRule passes ``promtool check rules``, its alerts
have unit tests that pass ``promtool test rules``, and every dashboard panel's query parses.
Live (``ci observe check``): every dashboard panel's query returns data from the environment's
Prometheus and every rule group is loaded there without error. ``endpoints`` reaches the APIs
(a URL, or a Service through the API server's proxy), also for the smoke checks.
"""
