"""The pure mask core: bytes and geometry in, maps and numbers out; no network, no store, no vendor.

decode.py        PNG (in bands) or RGBA + labelmap → class/instance maps, areas, boxes, RLE (`FrameMasks`)
labelmap.py      the vendor legend → classes and segments (`Labelmap`)
rle.py           COCO RLE (column-major counts) encode/decode
png.py           minimal PNG writers for the output maps (grey16, palette)
raster.py        vector shapes → boolean masks (polygon, ellipse, rectangle, CVAT's mask RLE)
segmentation.py  one job's segmentation outputs (maps, segments JSON) and `labelhook decode`
memory.py        what a frame costs to decode, and the per-process budget frames wait for
frame_pool.py    a job's frames on several threads, in order, a bounded number in flight

CVAT's shapes and tracks (its annotation JSON, keyframe interpolation, z-order) live with the CVAT
vendor in `processors.vendors.cvat` (`shapes.py`, `tracks.py`), not here: they model one vendor's
data format and change when CVAT does, like Playment's result parsing lives with Playment. What they
need from this package is vendor-neutral — rasterising geometry (`raster.py`) and writing the maps
(`segmentation.py`) — so the dependency points one way: vendors → masks, never back.
"""
