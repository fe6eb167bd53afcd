"""An order workflow on celery_durable: fan-out, a durable timer and an approval event."""
