"""The Celery app, queues, task definitions, the command lifecycle and the stores of hwq."""
