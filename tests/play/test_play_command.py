"""`ivideogpt play` on the command line: its flags, its default checkpoint, clear refusals, its packaged page."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivideogpt.cli import build_parser
from ivideogpt.commands import play

ROOT = Path(__file__).resolve().parents[2]


def test_the_defaults_serve_the_shipped_model_on_localhost() -> None:
    args = build_parser().parse_args(["play"])
    assert Path(args.checkpoint) == ROOT / "checkpoints" / "pusht" and Path(args.checkpoint).is_dir()
    assert args.host == "127.0.0.1" and args.port == 8000 and args.handler is play.run
    exposed = build_parser().parse_args(["play", "--host", "0.0.0.0", "--port", "9001"])
    assert (exposed.host, exposed.port) == ("0.0.0.0", 9001)


def test_a_missing_checkpoint_is_refused_before_serving(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    args = build_parser().parse_args(["play", "--checkpoint", str(tmp_path / "none")])
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        play.run(args)


def test_a_port_in_use_is_refused_in_one_line_before_the_model_loads(capsys) -> None:
    import socket

    from ivideogpt.cli import main

    pytest.importorskip("uvicorn")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["play", "--port", str(port)]) == 2  # uvicorn exited 3 after loading, having printed the URL
    out, err = capsys.readouterr()
    assert err.strip() == f"ivideogpt play: cannot serve on 127.0.0.1:{port}: Address already in use" and not out
    assert main(["play", "--host", "no-such-host.invalid"]) == 2  # a name that does not resolve: before loading too
    assert capsys.readouterr().err.startswith("ivideogpt play: cannot serve on no-such-host.invalid:")


def test_the_page_ships_inside_the_package() -> None:
    static = ROOT / "src" / "ivideogpt" / "play" / "static"
    assert {p.name for p in static.iterdir()} >= {"index.html", "play.js", "play.css"}
    project = (ROOT / "pyproject.toml").read_text()  # (tomllib is Python 3.11+; the project supports 3.10)
    assert '[tool.setuptools.package-data]\n"ivideogpt.play" = ["static/*"]' in project
    assert 'play = ["fastapi' in project
