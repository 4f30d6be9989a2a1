#!/usr/bin/env python3
"""servercall.py: an upcall/1 server in Python's standard library, one thread per client.

The old lab's server, grown into upcall/1 (the rules: src/upcall-1.md). It greets each client,
remembers the callbacks it registers, and turns every MSG into upcalls: `on_event` on the sender
("Upcall event: Processing <text>") and on every other client that registered it ("Upcall event:
<client-id> says <text>"). The answers (RETURN/FAIL) come back on the client's own connection.

    python3 examples/python/servercall.py --listen 127.0.0.1:4141
    cargo run --bin checkcall -- server 127.0.0.1:4141

The numbers in the comments are the rules of src/upcall-1.md.
"""

import argparse
import re
import socket
import threading
import time

MAX_LINE = 4096  # bytes, newline included (rule 1.4)
MAX_CALLBACKS = 64  # rule 3.4
CALLBACK_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")  # rule 3.1
UPCALL_ID = re.compile(r"[0-9]{1,20}")  # rule 6.4
# Invisible characters that reorder or hide text (rule 1.6), as src/protocol.rs lists them.
INVISIBLE = set("\u00ad\u061c\u180e\ufeff") | {chr(c) for c in range(0x200B, 0x2010)} | \
    {chr(c) for c in range(0x2028, 0x202F)} | {chr(c) for c in range(0x2060, 0x2065)} | \
    {chr(c) for c in range(0x2066, 0x206A)}

clients = {}  # client-id -> Client: everyone connected
clients_lock = threading.Lock()  # guards `clients`; never held while sending


class Bucket:
    """A token bucket: `rate` a second, bursts of 2 * rate (rules 9.5, 9.6)."""

    def __init__(self, rate):
        self.rate, self.tokens, self.last = rate, 2.0 * rate, time.monotonic()

    def take(self):
        now = time.monotonic()
        self.tokens = min(2.0 * self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Client:
    def __init__(self, sock, name):
        self.sock, self.name = sock, name
        self.callbacks = set()
        self.pending = {}  # upcall id -> when it is given up (rule 6.5)
        self.last_id = 0
        self.lock = threading.Lock()  # guards the fields above and the socket's writes

    def send(self, line):
        data = (line + "\n").encode()
        with self.lock:
            try:
                self.sock.sendall(data)
            except OSError:
                pass  # the client is gone: its own thread will notice

    def upcall(self, callback, argument):
        """Sends UPCALL <id> <callback> <argument>; ids count 1, 2, 3 (rule 5.1)."""
        with self.lock:
            self.last_id += 1
            upcall_id = self.last_id
            self.pending[upcall_id] = time.monotonic() + options.upcall_timeout
            line = f"UPCALL {upcall_id} {callback}" + (f" {argument}" if argument else "")
            try:
                self.sock.sendall((line + "\n").encode())
            except OSError:
                pass
        print(f"Upcall {upcall_id} to {self.name}: {callback}({argument!r})")


def bad_text(text):
    """Why `text` is not upcall/1 text, or None (rule 1.6)."""
    for c in text:
        if (ord(c) < 0x20 and c != "\t") or 0x7F <= ord(c) <= 0x9F:
            return f"control character U+{ord(c):04X} in line"
        if c in INVISIBLE:
            return f"invisible format character U+{ord(c):04X} in line"
    return None


def serve_client(sock, name):
    client = Client(sock, name)
    with clients_lock:
        clients[name] = client
    print(f"Connection from {sock.getpeername()} ({name})")
    client.send(f"WELCOME {name} upcall/1")  # rule 2.1: first, without waiting
    lines, refusals = Bucket(options.max_msg_rate), Bucket(options.max_msg_rate)
    connected = time.monotonic()
    said_a_line = False
    buffer, skipping, partial_since = b"", False, None
    sock.settimeout(min(0.5, options.line_timeout / 4))  # wake up to check the timeouts

    def refuse(reason):
        client.send(f"ERR {reason}")  # rule 7.1: one ERR per refused line
        if not refusals.take():  # rule 9.6
            client.send(f"ERR too many refused lines: more than {options.max_msg_rate} a second; "
                        "closing the connection")
            return False
        return True

    try:
        while True:
            # Timeouts (rules 9.1-9.3): a slot is held only by a client that uses it.
            now = time.monotonic()
            limit = f"{options.line_timeout:g} s"
            if not client.callbacks and now - connected >= options.line_timeout:
                what = "no callback registered" if said_a_line else "no complete line"
                client.send(f"ERR {what} within {limit} of connecting: closing the connection")
                break
            if partial_since is not None and now - partial_since >= options.line_timeout:
                client.send(f"ERR a line was left unfinished for {limit}: closing the connection")
                break
            try:
                data = sock.recv(4096)
            except socket.timeout:
                continue
            if not data:
                break
            buffer += data
            keep_going = True
            while keep_going and b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                if skipping:  # the rest of a line that was too long (rule 1.4)
                    skipping = False
                    keep_going = refuse(f"line too long (the limit is {MAX_LINE} bytes)")
                    continue
                keep_going = handle(client, raw, lines, refuse)
                said_a_line = said_a_line or raw.strip(b"\r") != b""
            partial_since = (partial_since or time.monotonic()) if buffer or skipping else None
            if len(buffer) >= MAX_LINE:
                buffer, skipping = b"", True
            if not keep_going:
                break
    except OSError:
        pass
    finally:
        with clients_lock:
            clients.pop(name, None)
        sock.close()
        print(f"{name} disconnected")


def handle(client, raw, lines, refuse):
    """One line from a client. Returns False when the connection is to close."""
    if raw.endswith(b"\r"):  # rule 1.1
        raw = raw[:-1]
    if not raw:  # rule 1.2: ignored (it still counts against the rate)
        return lines.take() or refuse("too many lines: this one was ignored")
    if len(raw) + 1 > MAX_LINE:
        return refuse(f"line too long (the limit is {MAX_LINE} bytes)")
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        return refuse("line is not valid UTF-8")
    problem = bad_text(line)
    if problem:
        return refuse(problem)
    verb, _, rest = line.partition(" ")
    verb = verb.upper()  # rule 1.3

    # Answers to pending upcalls and new registrations are free; every other line counts.
    if verb in ("RETURN", "FAIL"):
        upcall_id, _, value = rest.partition(" ")
        if not upcall_id:
            return lines.take() and refuse("missing field: RETURN/FAIL <id>")
        if not UPCALL_ID.fullmatch(upcall_id) or int(upcall_id) >= 2**64:
            return lines.take() and refuse("bad upcall id (expected a decimal number)")
        with client.lock:
            deadline = client.pending.pop(int(upcall_id), None)
        if deadline is None or deadline < time.monotonic():  # rules 6.3 and 6.5
            return lines.take() and refuse(f"unknown upcall id {upcall_id} (never sent, already "
                                           "answered, or given up after the timeout)")
        print(f"{client.name} {'returned' if verb == 'RETURN' else 'failed'} {upcall_id}: {value}")
        return True  # rule 6.1: no reply
    if verb == "REGISTER" and CALLBACK_NAME.fullmatch(rest) and rest not in client.callbacks:
        if len(client.callbacks) >= MAX_CALLBACKS:
            return refuse(f"too many callbacks: at most {MAX_CALLBACKS} per client")
        client.callbacks.add(rest)
        client.send(f"REGISTERED {rest}")  # rule 3.1
        return True
    if not lines.take():  # rule 9.5
        if verb == "MSG":
            return refuse(f"too many messages: at most {options.max_msg_rate} a second "
                          f"(bursts of {2 * options.max_msg_rate}); this one was not passed on")
        return refuse(f"too many lines: at most {options.max_msg_rate} a second; this one was ignored")

    if verb == "REGISTER":
        if rest in client.callbacks:
            client.send(f"REGISTERED {rest}")  # rule 3.3
            return True
        return refuse("bad callback name (use [a-z][a-z0-9_]*, at most 32 characters)")
    if verb == "MSG":
        print(f"Received from {client.name}: {rest}")
        if "on_event" in client.callbacks:
            client.upcall("on_event", f"Upcall event: Processing {rest}")  # rule 4.1
        else:
            refuse("no on_event registered: send REGISTER on_event to get upcalls")  # rule 4.3
        with clients_lock:
            others = [c for c in clients.values() if c is not client and "on_event" in c.callbacks]
        for other in others:  # rule 4.2
            other.upcall("on_event", f"Upcall event: {client.name} says {rest}")
        return True
    if verb == "BYE":
        if rest:
            return refuse("unexpected field")
        client.send("BYE")  # rule 8.1
        return False
    if verb in ("WELCOME", "REGISTERED", "UPCALL", "ERR"):
        return refuse(f"{verb} is sent by the server, not by a client")
    return refuse("unknown verb (expected REGISTER, MSG, RETURN, FAIL or BYE)")


def main():
    host, _, port = options.listen.rpartition(":")
    listener = socket.create_server((host, int(port)))
    address = "%s:%d" % listener.getsockname()[:2]
    print(f"servercall.py listening on {address} (upcall/1)", flush=True)
    number = 0
    while True:
        sock, _ = listener.accept()
        number += 1  # rule 2.2: a new id for every connection
        threading.Thread(target=serve_client, args=(sock, f"client-{number}"), daemon=True).start()


parser = argparse.ArgumentParser(description="An upcall/1 server (src/upcall-1.md).")
parser.add_argument("--listen", default="127.0.0.1:4141")
parser.add_argument("--line-timeout", type=float, default=30)
parser.add_argument("--upcall-timeout", type=float, default=5)
parser.add_argument("--max-msg-rate", type=int, default=20)
options = parser.parse_args()

if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
