"""Events: webhooks (subscriptions, signed deliveries that survive restarts) and the
Server-Sent Event streams of job and task changes."""
