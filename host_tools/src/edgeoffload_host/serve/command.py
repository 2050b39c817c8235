"""``edgeoffload-host serve``: the offload endpoint for a directory of models."""

from __future__ import annotations

import argparse
import logging
import sys
import threading

from edgeoffload.errors import ModelError
from edgeoffload_host.serve.http import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_READ_TIMEOUT_S, start_server
from edgeoffload_host.signals import install_stop_handlers, restore_handlers

logger = logging.getLogger(__name__)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 0..65535")
    return value


class ServeCommand:
    """Serve every *.tflite in a directory over the Open Inference Protocol v2 (HTTP, binary tensors)."""

    name = "serve"
    help = "serve the *.tflite models of a directory as an Open Inference Protocol v2 endpoint"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--models", metavar="DIR", required=True,
                            help="directory of *.tflite models (named by file stem)")
        parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
        parser.add_argument("--port", type=_port, default=8000, help="TCP port, 0 for any (default: %(default)s)")
        parser.add_argument("--workers", type=_positive_int, default=2,
                            help="interpreters per model, i.e. concurrent runs (default: %(default)s)")
        parser.add_argument("--threads", type=_positive_int, default=1,
                            help="threads per interpreter (default: %(default)s)")
        parser.add_argument("--max-request-bytes", type=_positive_int, default=DEFAULT_MAX_REQUEST_BYTES,
                            help="largest request body accepted, else 413 (default: %(default)s)")
        parser.add_argument("--read-timeout-s", type=float, default=DEFAULT_READ_TIMEOUT_S,
                            help="close a connection that sends nothing for this long; 408 mid-body "
                                 "(default: %(default)s)")

    def run(self, args: argparse.Namespace) -> int:
        try:
            server = start_server(args.models, host=args.host, port=args.port, workers=args.workers,
                                  threads=args.threads, max_request_bytes=args.max_request_bytes,
                                  read_timeout_s=args.read_timeout_s)
        except ModelError as exc:
            print(f"edgeoffload-host serve: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"edgeoffload-host serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 2
        if not server.repository.names:
            server.close()
            print(f"edgeoffload-host serve: no loadable *.tflite model in {args.models}", file=sys.stderr)
            return 2
        stop = threading.Event()
        previous = install_stop_handlers(stop)  # before the line: whoever reads it may signal at once
        print(f"serving {', '.join(server.repository.names)} at {server.url}", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            restore_handlers(previous)
            logger.info("stopping the endpoint at %s", server.url)
            server.close()
        return 0
