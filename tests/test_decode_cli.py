"""`labelhook decode` over several frames (a video): frames in order, progress per frame, all-or-nothing."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

from PIL import Image

from tests.support import cli_env, run_cli

LEGEND = {"#ff0000": "car", "#00ff00": "road"}


def frame(path: Path, car_x: int) -> Path:
    image = Image.new("RGBA", (16, 8), (0, 255, 0, 255))
    for x in range(car_x, car_x + 4):
        for y in range(2, 6):
            image.putpixel((x, y), (255, 0, 0, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


def decode(tmp_path: Path, *masks: Path) -> subprocess.CompletedProcess[str]:
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"legend": LEGEND}))
    out = str(tmp_path / "out")
    return run_cli(
        "decode", *map(str, masks), "--result", str(result), "--out", out, env=cli_env(tmp_path), cwd=tmp_path
    )


def test_several_masks_are_the_frames_of_a_video_in_order(tmp_path: Path) -> None:
    done = decode(tmp_path, *(frame(tmp_path / f"f{i}.png", 2 + 3 * i) for i in range(3)))
    assert done.returncode == 0, done.stderr
    assert [line.split(" ")[1] for line in done.stderr.splitlines() if line.startswith("decoding:")] == [
        "1/3",
        "2/3",
        "3/3",
    ]
    coco = json.loads((tmp_path / "out/annotations.json").read_text())
    assert [image["frame_index"] for image in coco["images"]] == [0, 1, 2]
    for index in range(3):
        semantic = Image.open(tmp_path / f"out/masks/{index}/semantic.png")
        car_id = next(c["id"] for c in coco["categories"] if c["name"] == "car")
        columns = {x for x in range(16) if semantic.getpixel((x, 3)) == car_id}
        assert columns == set(range(2 + 3 * index, 6 + 3 * index))  # the car moved 3 px per frame


def test_a_bad_frame_writes_nothing_and_names_the_file(tmp_path: Path) -> None:
    good = frame(tmp_path / "f0.png", 2)
    bad = tmp_path / "f1.png"
    bad.write_bytes(good.read_bytes()[:60])  # truncated PNG
    done = decode(tmp_path, good, bad)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()[-1:]
    assert "f1.png" in line
    assert not (tmp_path / "out").exists()
