"""`noderr-node` / `python -m node_service`: starts the node from its `.env` under uvicorn.

SIGTERM (docker stop) first tells the node to stop leasing, then uvicorn drains HTTP requests and
the lifespan finishes or releases in-flight tasks; the process then exits with status 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from node_service.settings import NodeSettings


class NodeServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.on_stop = None

    def handle_exit(self, sig, frame) -> None:
        if self.on_stop is not None:
            self.on_stop()
        super().handle_exit(sig, frame)


def load_settings(env_file: Path | None) -> NodeSettings:
    try:
        return NodeSettings(_env_file=env_file) if env_file else NodeSettings()
    except ValidationError as exc:
        problems = "\n".join(
            f"  NODERR_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors())
        sys.stderr.write(
            "noderr-node: the node configuration is incomplete or invalid:\n"
            f"{problems}\nThese come from the .env in your node bundle (or the environment).\n")
        raise SystemExit(2) from None


def quiet_steady_state(settings: NodeSettings) -> None:
    """A healthy node logs state changes, not traffic: httpx's one line per request (every lease
    poll, heartbeat and beacon — tens of thousands a day) shows only at DEBUG, and onnxruntime's
    usage telemetry stays off unless the operator opts in."""
    if settings.node_log_level != "DEBUG":
        logging.getLogger("httpx").setLevel(logging.WARNING)
        logging.getLogger("httpcore").setLevel(logging.WARNING)
    if not settings.node_ort_telemetry:
        import onnxruntime

        onnxruntime.disable_telemetry_events()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="noderr-node", description="Noderr inference node")
    parser.add_argument("--env-file", type=Path, default=None,
                        help="the bundle's .env (default: ./.env if present, plus the environment)")
    parser.add_argument("--host", default=None, help="override NODERR_NODE_HOST")
    parser.add_argument("--port", type=int, default=None, help="override NODERR_NODE_PORT")
    args = parser.parse_args(argv)
    if args.env_file is not None and not args.env_file.is_file():
        parser.error(f"--env-file {args.env_file} does not exist")
    settings = load_settings(args.env_file)
    logging.basicConfig(level=settings.node_log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    quiet_steady_state(settings)

    from node_service.main import create_app

    app = create_app(settings)
    config = uvicorn.Config(app, host=args.host or settings.node_host,
                            port=args.port or settings.node_port, log_level=settings.node_log_level.lower(),
                            access_log=False, timeout_graceful_shutdown=max(
                                1, int(settings.node_shutdown_grace_seconds)))
    server = NodeServer(config)

    def stop_agent() -> None:
        agent = getattr(app.state, "agent", None)
        if agent is not None:
            agent.request_stop()

    server.on_stop = stop_agent
    # uvicorn re-raises the captured SIGTERM after its graceful shutdown; with this handler that
    # re-raise is a no-op, so a requested stop ends with exit status 0 instead of -15.
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()
    if not server.started:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
