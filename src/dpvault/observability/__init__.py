"""What operators watch: Prometheus metrics (``/metrics``), health probes (``/healthz``,
``/readyz``), and the per-request counters the app keeps for them.

Most series are read from the state database when scraped, so every process (API or worker,
``serve --workers K``) answers the same numbers and they survive restarts; only the HTTP request
counters and lease expiries are kept in process (they are about the process).
"""
