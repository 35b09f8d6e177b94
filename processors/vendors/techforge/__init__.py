"""TechForge: no callbacks; jobs are submitted and polled with the API key.

processor.py  `TechForgeProcessor`   api.py  the API's requests and responses
inputs.py     validation of the jobs given to `labelhook submit`   options.py  `TechForgeOptions`
"""
