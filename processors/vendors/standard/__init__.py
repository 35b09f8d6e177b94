"""Standard Webhooks sources: the callback itself is the result, stored as `callback.json`.

processor.py  `StandardProcessor`   options.py  `StandardOptions` (replay window) and the key check
"""
