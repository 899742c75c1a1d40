"""The task engine of the /v2 API: operations, their checking, and running jobs of tasks."""
