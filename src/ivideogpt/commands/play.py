"""`ivideogpt play`: a local web page to drive a world model, by default the shipped Push-T reference model.

Loads the checkpoint once, serves the page and its API with uvicorn (127.0.0.1 unless `--host`), and
prints the median click-to-frame latency with its split every `--report-every` steps and on exit.
"""

from __future__ import annotations

import argparse
import signal
import socket
from pathlib import Path

from ivideogpt.commands.plan import add_precision_argument

HELP = "drive the world model in the browser: click where the pusher goes, see the predicted frames"
SHIPPED = Path(__file__).resolve().parents[3] / "checkpoints" / "pusht"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=str(SHIPPED),
                        help="world-model checkpoint or run directory (default: the shipped Push-T reference model)")
    parser.add_argument("--data", help="its training data folder, for held-out start clips (default: the one its "
                                       "config names, when present)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes the page)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="sampling temperature of predicted tokens (0: the most likely code, steady frames)")
    add_precision_argument(parser)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: a tiny model's per-token matmuls are too small to split, "
                             "and the browser needs a core too)")
    parser.add_argument("--max-sessions", type=int, default=16, help="open sessions kept (least recently used dropped)")
    parser.add_argument("--idle-minutes", type=float, default=10.0, help="a session idle this long is dropped")
    parser.add_argument("--report-every", type=int, default=20,
                        help="print the latency every N steps (0: only on exit)")


def run(args: argparse.Namespace) -> int:
    import torch
    import uvicorn

    from ivideogpt.play.app import create_app
    from ivideogpt.play.engine import PlayEngine
    from ivideogpt.play.model import load_play_model
    from ivideogpt.play.session import SessionStore

    torch.set_num_threads(args.threads)
    if not Path(args.checkpoint).exists():
        raise FileNotFoundError(f"no checkpoint at {args.checkpoint}")
    check_bindable(args.host, args.port)
    model = load_play_model(args.checkpoint, args.data, args.device, args.temperature, args.precision)
    if not model.describe()["starts"]:
        raise ValueError(f"{args.checkpoint} is not a Push-T model and no held-out clips were found to start "
                         f"from: pass --data with its training data folder")
    def report(steps: int) -> None:
        if args.report_every > 0 and steps % args.report_every == 0:
            print(engine.latency.summary(), flush=True)

    store = SessionStore(args.max_sessions, 60 * args.idle_minutes)
    store.prune_every(30.0)
    engine = PlayEngine(model, store, on_step=report)
    engine.warm_up()
    print(f"ivideogpt play: {args.checkpoint} ({model.action_dim}-d actions, "
          f"{'Push-T' if model.is_pusht else 'sliders'}, {len(model.clips)} held-out clips) "
          f"at http://{args.host}:{args.port}/", flush=True)
    # uvicorn serves until Ctrl-C or SIGTERM, then raises the signal again: end like Ctrl-C on either
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        uvicorn.run(create_app(engine), host=args.host, port=args.port, log_level="warning", lifespan="off")
    except KeyboardInterrupt:
        pass
    engine.close()
    print(engine.latency.summary(), flush=True)
    return 0


def check_bindable(host: str, port: int) -> None:
    """Refuse in one line, before the model loads, an address uvicorn could not bind (a port in use, a foreign host)."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]  # as uvicorn binds
        with socket.socket(family, kind) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as error:  # a port in use, an address not of this machine, a name that does not resolve
        raise ValueError(f"cannot serve on {host}:{port}: {error.strerror or error}") from None
