"""Playment / TELUS: callbacks or polling, then the job API → signed attachment URLs → masks.

processor.py  `PlaymentProcessor`   api.py  `PlaymentAPI` (job API client)   options.py  `PlaymentOptions`
result.py     the job result → which mask frames to fetch and with which legend (`plan_result`)
"""
