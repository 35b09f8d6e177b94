"""Scale: ``scale-callback-auth``-verified callbacks; tasks re-read and segmentation decoded by index.

processor.py  `ScaleProcessor`: process, poll, submit
api.py        `ScaleClient` (Basic auth, to the API origin only)
result.py     labelMapping → labelmap, index map → instance map
options.py    `ScaleOptions`
status.py     task status → job state (shared with the receiver's adapter)
submit.py     INPUT.json → create-task requests
"""
