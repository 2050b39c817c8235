"""``edgeoffload-host serve`` as a command: its one line, signals, and user errors (exit 2)."""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from edgeoffload.backends.remote import OipClient
from edgeoffload_host.serve.command import ServeCommand

RUNNER = ("import argparse, sys\n"
          "from edgeoffload_host.serve.command import ServeCommand\n"
          "command = ServeCommand()\n"
          "parser = argparse.ArgumentParser(prog='edgeoffload-host serve')\n"
          "command.add_arguments(parser)\n"
          "sys.exit(command.run(parser.parse_args(sys.argv[1:])))\n")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    ServeCommand().add_arguments(parser)
    return parser.parse_args(argv)


def test_the_command_describes_itself():
    command = ServeCommand()
    assert command.name == "serve" and command.help
    args = parse("--models", "m")
    assert (args.host, args.port, args.workers, args.threads, args.max_request_bytes) == (
        "127.0.0.1", 8000, 2, 1, 64 * 1024 * 1024)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serves_until_a_stop_signal(tiny_models, tmp_path, signum):
    shutil.copy(tiny_models["q"], tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, "--models", str(tmp_path), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving tiny_q_16 at http://127.0.0.1:"), (line, proc.stderr.read())
        url = line.split(" at ")[1].strip()
        with OipClient(url) as client:
            assert client.ready(timeout_s=5)
        proc.send_signal(signum)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()


def test_bad_directory_is_one_line_and_exit_2(tmp_path, capsys):
    assert ServeCommand().run(parse("--models", str(tmp_path / "nope"), "--port", "0")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"models directory {tmp_path / 'nope'} does not exist" in err


def test_a_directory_without_models_is_exit_2(tmp_path, capsys):
    assert ServeCommand().run(parse("--models", str(tmp_path), "--port", "0")) == 2
    assert "no loadable *.tflite model in" in capsys.readouterr().err


def test_a_port_in_use_is_exit_2(tiny_models, tmp_path, capsys):
    shutil.copy(tiny_models["q"], tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        assert ServeCommand().run(parse("--models", str(tmp_path), "--port", str(port))) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
