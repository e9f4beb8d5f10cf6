"""Videos for viewing: side-by-side panels, held last frames, labels, file formats."""

import os

import numpy as np
import pytest

from ivideogpt.media import side_by_side, with_header, write_video


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
    with pytest.raises(ValueError, match="must end in .gif or .mp4"):
        write_video(tmp_path / "v.txt", labelled)


def test_odd_sizes_are_padded_for_mp4(tmp_path) -> None:
    import imageio.v3 as iio

    frames = np.zeros((3, 9, 11, 3), np.uint8)
    assert iio.imread(write_video(tmp_path / "v.mp4", frames), plugin="pyav").shape == (3, 10, 12, 3)


@pytest.mark.parametrize("fps", [7.5, 10.0, 29.97])
def test_fractional_frame_rates_are_written(tmp_path, fps: float) -> None:
    import av

    frames = np.zeros((3, 8, 8, 3), np.uint8)
    with av.open(str(write_video(tmp_path / "v.mp4", frames, fps=fps))) as container:
        assert float(container.streams.video[0].average_rate) == pytest.approx(fps, rel=1e-3)
    with pytest.raises(ValueError, match="fps must be > 0"):
        write_video(tmp_path / "v.gif", frames, fps=0)


def test_header_notes_change_with_the_frame() -> None:
    video = np.zeros((2, 8, 40, 3), np.uint8)
    noted = with_header(video, ["a", "b"], 20, notes=["frame 0", "frame 1"])
    assert noted.shape == (2, 28 + 8, 40, 3) and not np.array_equal(noted[0, 14:28], noted[1, 14:28])
    with pytest.raises(ValueError, match="1 notes for 2 frames"):
        with_header(video, ["a"], 20, notes=["x"])


@pytest.mark.skipif(not hasattr(os, "sched_getscheduler"), reason="Linux scheduling policies")
def test_an_encoder_that_changes_the_threads_priority_is_undone(tmp_path, monkeypatch) -> None:
    """SVT-AV1 run as root leaves the thread at SCHED_FIFO 99, which starves spin-waiting OpenMP threads."""
    import av

    before = os.sched_getscheduler(0), os.sched_getparam(0)
    real_open = av.open

    def open_and_change_priority(*args, **kwargs):  # what the encoder does, here without root: SCHED_BATCH
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        return real_open(*args, **kwargs)

    monkeypatch.setattr(av, "open", open_and_change_priority)
    write_video(tmp_path / "v.mp4", np.zeros((2, 8, 8, 3), np.uint8))
    assert (os.sched_getscheduler(0), os.sched_getparam(0)) == before
