"""super.AI: token- or ECDSA-verified callbacks; job results fetched from the super.AI API.

processor.py  `SuperAIProcessor`   api.py  `SuperAIClient`   states.py  job states
options.py    `SuperAIOptions` and the public-key check
"""
