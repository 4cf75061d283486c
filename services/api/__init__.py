"""The REST API: accepts questions and documents, enqueues work, serves results."""
