"""Test hook, on PYTHONPATH only in tests/test_interrupt_startup.py: the forkserver that
preloads the worker module connects to the test's socket at interpreter start, says it is
there, and waits for the test's go-ahead: the runner is then starting up, no cell has run, and
the test can press Ctrl-C at exactly that moment."""

import os
import socket
import sys

_address = os.environ.get("HOBENCH_TEST_STARTUP_SOCKET")
if _address and "forkserver" in " ".join(sys.orig_argv):
    with socket.socket(socket.AF_UNIX) as _sock:
        _sock.connect(_address)
        _sock.sendall(b"started\n")
        _sock.recv(16)  # the test's go-ahead, sent after its Ctrl-C
