"""Side-by-side planning videos: panel layout, held last frames, labels, file formats."""

import numpy as np
import pytest

from ivideogpt.planning.video import side_by_side, write_video


def test_panels_are_stacked_held_and_labelled(tmp_path) -> None:
    long, short = np.zeros((3, 8, 8, 3), np.uint8), np.full((1, 8, 8, 3), 255, np.uint8)
    video = side_by_side(long, None, short, gap=2, scale=1)
    assert video.shape == (3, 8, 18, 3)
    assert (video[2, :, 10:] == 255).all()  # the short panel holds its last frame
    assert (video[:, :, 8:10] == 128).all()  # grey gap
    labelled = side_by_side(long, short, gap=2, scale=2, labels=["real", "imagined"])
    assert labelled.shape == (3, 14 + 16, 36, 3)
    assert (labelled[:, :14] < 255).any()  # the header carries text
    panels = labelled[:, 14:]
    assert np.array_equal(panels, side_by_side(long, short, gap=2, scale=2))
    with pytest.raises(ValueError, match="1 labels for 2 panels"):
        side_by_side(long, short, labels=["real"])
    assert write_video(tmp_path / "v.gif", labelled).read_bytes()[:6] == b"GIF89a"
    with pytest.raises(ValueError, match="must end in .mp4 or .gif"):
        write_video(tmp_path / "v.avi", labelled)
