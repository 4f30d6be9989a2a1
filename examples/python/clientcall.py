#!/usr/bin/env python3
"""clientcall.py: an upcall/1 client in Python's standard library.

The old lab's client, grown into upcall/1 (the rules: src/upcall-1.md). It registers three
functions the server may call back, sends what you type as MSG, and has a reader thread that
runs every UPCALL the moment it arrives and answers RETURN or FAIL, even while you sit at the
prompt.

    python3 examples/python/clientcall.py --server 127.0.0.1:4141
    cargo run --bin checkcall -- client      # then: clientcall.py --server 127.0.0.1:4142

The numbers in the comments are the rules of src/upcall-1.md.
"""

import argparse
import os
import socket
import sys
import threading

MAX_LINE = 4096  # bytes, newline included (rule 1.5)


def on_event(text):
    print(f"\nReceived upcall from server: {text}")
    return "ok"


def hostname(_argument):
    return socket.gethostname()


# The functions the server may call: name -> function(argument) -> value (rule 5.6).
CALLBACKS = {"on_event": on_event, "uppercase": str.upper, "hostname": hostname}

send_lock = threading.Lock()  # two threads send: each line must leave whole


def send(sock, line):
    with send_lock:
        sock.sendall((line + "\n").encode())


def read_lines(sock):
    """The server's lines, one at a time, each at most MAX_LINE bytes (longer ones skipped)."""
    stream = sock.makefile("rb")
    while True:
        raw = stream.readline(MAX_LINE + 1)
        if not raw:
            return
        if not raw.endswith(b"\n"):
            if len(raw) > MAX_LINE:  # too long: skip to its newline
                while raw and not raw.endswith(b"\n"):
                    raw = stream.readline(MAX_LINE + 1)
                continue
            return  # closed in the middle of a line
        line = raw[:-1]
        if line.endswith(b"\r"):  # rule 1.1
            line = line[:-1]
        try:
            yield line.decode("utf-8")  # rule 1.7
        except UnicodeDecodeError:
            print("\nIgnoring a line from the server: not UTF-8")


def answer(sock, rest):
    """UPCALL <id> <callback> [<argument>]: run the callback, answer with the same id."""
    upcall_id, _, rest = rest.partition(" ")
    callback, _, argument = rest.partition(" ")  # rule 5.2: the argument may be missing
    if not upcall_id.isdigit() or not callback:
        print(f"\nIgnoring a bad UPCALL: {rest!r}")  # rule 7.4
        return
    function = CALLBACKS.get(callback)
    if function is None:
        send(sock, f"FAIL {upcall_id} unknown callback {callback}")  # rule 5.5
        return
    try:
        value = function(argument)
    except Exception as error:  # a failing callback is a FAIL, not a dead client
        send(sock, f"FAIL {upcall_id} {error}")
        return
    print(f"\nUpcall {upcall_id} from server: {callback}({argument!r}) -> {value!r}")
    send(sock, f"RETURN {upcall_id} {value}" if value else f"RETURN {upcall_id}")  # rule 5.3


def reader(sock):
    """The reader thread: every line from the server, as it comes (rule 5.4)."""
    for line in read_lines(sock):
        if not line:  # rule 1.2
            continue
        verb, _, rest = line.partition(" ")
        verb = verb.upper()  # rule 1.3
        if verb == "UPCALL":
            answer(sock, rest)
        elif verb == "ERR":  # rule 7.3: told, never answered
            print(f"\nServer error: {rest}")
        elif verb == "BYE":  # rule 8.2: the server is closing
            print("\nServer said BYE.")
        elif verb == "WELCOME":  # rule 2.1: the server names this connection
            print(f"Connected as {rest.split(' ')[0]}.")
        elif verb == "REGISTERED":
            pass
        else:
            print(f"\nIgnoring a line from the server: {line!r}")  # rule 7.4
    print("\nServer closed the connection.")
    sock.close()
    os._exit(0)


def main():
    parser = argparse.ArgumentParser(description="An upcall/1 client (src/upcall-1.md).")
    parser.add_argument("--server", default="127.0.0.1:4141")
    options = parser.parse_args()
    host, _, port = options.server.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.settimeout(None)
    # A client need not wait for WELCOME or REGISTERED before sending (rule 2.3): the three
    # REGISTERs leave at once, and the server answers them in order (rule 7.2).
    for name in CALLBACKS:
        send(sock, f"REGISTER {name}")  # rule 2.4
    threading.Thread(target=reader, args=(sock,), daemon=True).start()
    for typed in sys.stdin:
        typed = typed.rstrip("\n")
        if typed.strip().lower() == "bye":
            break
        if typed:
            send(sock, f"MSG {typed}")
    send(sock, "BYE")
    threading.Event().wait(2)  # the server answers BYE and closes; the reader thread exits


if __name__ == "__main__":
    main()
