"""A second, independent Socket.IO client for the basics: python-socketio.

Run by e2e/socketio/python-client.test.js; prints one JSON object per line for each
thing it sees, so the JS side can assert on them.

    client.py ok  URL API_KEY TRANSPORTS   # connect, send, ack, error event, receive
    client.py bad URL API_KEY TRANSPORTS   # expect a connect_error
"""

import json
import sys
import threading

import socketio

TIMEOUT_S = 20


# The client's handlers run on its own threads while the main thread reports too: one
# line must go out whole, or two threads' lines interleave ("{...}{...}").
SAY_LOCK = threading.Lock()


def say(**fields):
    with SAY_LOCK:
        sys.stdout.write(json.dumps(fields) + "\n")
        sys.stdout.flush()


def main():
    mode, url, api_key, transports = sys.argv[1:5]
    sio = socketio.Client(reconnection=False)
    done = threading.Event()
    errored = threading.Event()

    @sio.event
    def connect():
        say(event="connected", sid=sio.get_sid())

    @sio.event
    def connect_error(data):
        say(event="connect_error", data=data)
        done.set()

    @sio.on("message")
    def on_message(data):
        say(event="message", data=data)
        if data == "bye from js":
            done.set()

    @sio.on("error")
    def on_error(data):
        say(event="error", data=data)
        errored.set()

    try:
        sio.connect(
            url,
            auth={"apiKey": api_key},
            transports=transports.split(","),
            wait_timeout=10,
        )
    except socketio.exceptions.ConnectionError as error:
        if mode == "bad":
            done.wait(TIMEOUT_S)
            say(event="refused", error=str(error))
            return 0
        say(event="failed", error=str(error))
        return 1
    if mode == "bad":
        say(event="unexpectedly connected")
        sio.disconnect()
        return 1

    say(event="transport", name=sio.transport())
    ack = sio.call("message", "hello from python", timeout=10)
    say(event="ack", data=ack)
    sio.emit("message", 42)
    if not errored.wait(TIMEOUT_S):
        say(event="timeout", waiting_for="error event")
        return 2
    say(event="ready")
    if not done.wait(TIMEOUT_S):
        say(event="timeout", waiting_for="bye from js")
        return 2
    sio.disconnect()
    say(event="disconnected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
