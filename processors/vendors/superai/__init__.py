"""super.AI: token- or ECDSA-verified callbacks; job results fetched from the super.AI API.

processor.py  `SuperAIProcessor`, job states, the public-key check   api.py  `SuperAIClient`
"""
