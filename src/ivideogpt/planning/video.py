"""Planning videos are written by `ivideogpt.media`; this name stays for code that imports it from here."""

from ivideogpt.media import side_by_side, write_video

__all__ = ["side_by_side", "write_video"]
