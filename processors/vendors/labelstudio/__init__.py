"""Label Studio: webhook hints → the task's annotations from the API → brush/polygon/rectangle masks."""
