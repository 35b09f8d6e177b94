"""Labelbox: HMAC-verified webhooks; each label re-exported (GraphQL export v2) and its masks decoded.

processor.py  `LabelboxProcessor`: export row → media/, masks/, labelmap.json, annotations.json
api.py        `LabelboxClient`: the export task flow and mask downloads (Bearer key, API origin only)
export.py     export v2 row → frames, objects, labelmap; composite masks/shapes → instance maps
options.py    `LabelboxOptions`
"""
