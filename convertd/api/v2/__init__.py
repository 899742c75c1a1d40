"""The /v2 API: CloudConvert's API v2 (jobs of tasks), served locally."""
