"""Code every ragmesh service shares: settings, job schemas, queues, records, logs, metrics."""
