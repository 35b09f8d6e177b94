"""CVAT: webhook-triggered annotation export, parsed and rasterised into the standard outputs.

processor.py  `CvatProcessor`: fetch a finished job's annotations (or export), render, write outputs
api.py        `CvatClient`: CVAT's REST API (annotations, export requests, downloads)
options.py    `CvatOptions`: completion rule, export mode, poll interval, timeout
shapes.py     CVAT's annotation JSON → per-frame shapes, rendered in CVAT's z-order
tracks.py     CVAT's track keyframes → the shape on any frame (interpolation, `outside`)

The shapes/tracks model is here rather than in `processors.masks` because it is CVAT's data format;
the pixel rules it uses are the vendor-neutral `processors.masks.raster`.
"""
