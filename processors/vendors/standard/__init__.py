"""Standard Webhooks sources: the callback itself is the result, stored as `callback.json`."""
