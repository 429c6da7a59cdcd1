"""python -m runtime.agent provision --state DIR --board B --key PUB.pem [--token T]
python -m runtime.agent --state DIR --port P [--host 127.0.0.1] [--token-file F] [--cert C --keyfile K]
                        [--sim | --plugin NAME=MODULE:ATTR --pythonpath DIR] [--health-timeout S]
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from ..image import ImageError
from .server import MAX_UPLOAD, Agent, serve
from .state import State
from .supervisor import Supervisor

REPO_ROOT = Path(__file__).resolve().parents[2]
SIM_PLUGIN = "sim=compiler.runcli:live_sim_plugin"


def log(message: str) -> None:
    print(f"agent: {message}", file=sys.stderr, flush=True)


def provision(argv) -> int:
    ap = argparse.ArgumentParser(prog="python -m runtime.agent provision",
                                 description="Set up an agent's state folder: board, trusted keys, access token.")
    ap.add_argument("--state", required=True, type=Path)
    ap.add_argument("--board", required=True, help="the board this device is (images must list it as compatible)")
    ap.add_argument("--key", action="append", required=True, type=Path, help="trusted public key (PEM); repeat")
    ap.add_argument("--token", default=None, help="access token (default: a new random one, printed)")
    args = ap.parse_args(argv)
    try:
        token = State(args.state).provision(args.board, [k.read_bytes() for k in args.key], args.token)
    except (OSError, ValueError, ImageError, PermissionError) as e:
        print(f"provision: {e}", file=sys.stderr)
        return 2
    print(f"{args.state}: provisioned for board {args.board}; token in {args.state / 'token'}")
    if args.token is None:
        print(f"token: {token}")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["provision"]:
        return provision(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m runtime.agent", description="sitewarden device agent")
    ap.add_argument("--state", required=True, type=Path, help="the provisioned state folder")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8700, help="0 picks a free port (printed)")
    ap.add_argument("--token-file", default=None, help="access token file (default STATE/token)")
    ap.add_argument("--cert", default=None, help="TLS certificate (PEM); serve https")
    ap.add_argument("--keyfile", default=None, help="TLS private key (PEM)")
    ap.add_argument("--health-timeout", type=float, default=90.0, help="seconds a new runtime has to report health")
    ap.add_argument("--max-upload", type=int, default=MAX_UPLOAD, help="largest image or pack accepted, in bytes")
    ap.add_argument("--idle-timeout", type=float, default=60.0,
                    help="seconds of silence before a connection is dropped (a stalled upload frees the install)")
    ap.add_argument("--python", default=sys.executable, help="interpreter that runs the runtime")
    ap.add_argument("--plugin", action="append", default=[], metavar="NAME=MODULE:ATTR",
                    help="host-side source plug-in handed to the runtime")
    ap.add_argument("--pythonpath", action="append", default=[], help="extra import path for plug-ins")
    ap.add_argument("--sim", action="store_true",
                    help=f"build host only: give the runtime the live sim plug-in ({SIM_PLUGIN}, from {REPO_ROOT})")
    ap.add_argument("--ready-file", default=None, type=Path, help="write 'host port' here once listening")
    args = ap.parse_args(argv)
    if bool(args.cert) != bool(args.keyfile):
        ap.error("--cert and --keyfile go together")
    state = State(args.state)
    try:
        board = state.board
        token = state.token(args.token_file)
    except (OSError, ValueError, ImageError) as e:
        print(f"agent: cannot start: {e}", file=sys.stderr)
        return 2
    plugins, paths = list(args.plugin), list(args.pythonpath)
    if args.sim:
        plugins.append(SIM_PLUGIN)
        paths.append(str(REPO_ROOT))
    sup = Supervisor(state, python=args.python, plugins=tuple(plugins), pythonpath=tuple(paths), log=log)
    agent = Agent(state, sup, health_timeout=args.health_timeout, max_upload=args.max_upload, log=log)
    try:
        server = serve(agent, token, args.host, args.port, args.cert, args.keyfile, idle_timeout=args.idle_timeout)
    except OSError as e:
        print(f"agent: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    scheme = "https" if args.cert else "http"
    log(f"board {board}, state {state.root}, listening on {scheme}://{host}:{port}")
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    agent.boot()
    if args.ready_file:
        args.ready_file.write_text(f"{host} {port}\n")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        sup.close()
        server.server_close()
        log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
