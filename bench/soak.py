#!/usr/bin/env python3
"""A bounded soak of a live mqtt5d with client churn.

Starts mqtt5d (release build, sync durability, a fresh data directory) on a free loopback
port, then for --minutes runs:
  - "checker" subscribers: persistent (session expiry 300 s) and clean, MQTT 5 and 3.1.1,
    subscribed to soak/# at QoS 1 or 2; persistent ones go offline and come back now and then;
  - churners: clients that connect (random version, clean or persistent), subscribe and
    unsubscribe random filters, publish at random QoS, and disconnect, over and over;
  - publishers: QoS 1 and 2 messages with unique sequence numbers to soak/<n>.
It samples the broker's RSS (VmRSS from /proc) once a minute. At the end every checker drains
its session and the script checks that every QoS 1/2 message published while a checker's
session existed reached it (duplicates allowed for QoS 1, none for QoS 2). It prints a report
and exits non-zero on loss or if RSS grew in the second half of the run by more than 20 %.

Usage: target/test-venv/bin/python3 bench/soak.py --mqtt5d target/release/mqtt5d [--minutes 10]
Needs a Python with paho-mqtt 2.x: scripts/test-all.sh builds target/test-venv with it.
"""

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Checker:
    """A subscriber whose deliveries are checked."""

    def __init__(self, port, name, persistent, version, qos):
        self.port, self.name, self.persistent, self.version, self.qos = port, name, persistent, version, qos
        self.got = {}  # seq -> count
        self.lock = threading.Lock()
        self.client = None
        self.subscribed = threading.Event()

    def _client(self):
        proto = mqtt.MQTTv5 if self.version == 5 else mqtt.MQTTv311
        kwargs = {}
        if self.version != 5:
            kwargs["clean_session"] = not self.persistent
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.name, protocol=proto, **kwargs)
        c.on_message = self.on_message
        c.on_subscribe = lambda *a: self.subscribed.set()
        return c

    def on_message(self, c, u, msg):
        try:
            seq = int(msg.payload.decode().split(":")[1])
        except (ValueError, IndexError):
            return
        with self.lock:
            self.got[seq] = self.got.get(seq, 0) + 1

    def connect(self, first):
        # One client object for the whole run: a persistent session has client-side state too
        # (paho delivers a QoS 2 message at PUBREL), which a new object would lose.
        self.subscribed.clear()
        if first:
            self.client = self._client()
            if self.version == 5:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = 300 if self.persistent else 0
                self.client.connect(
                    "127.0.0.1", self.port, clean_start=mqtt.MQTT_CLEAN_START_FIRST_ONLY, properties=props
                )
            else:
                self.client.connect("127.0.0.1", self.port)
        else:
            self.client.reconnect()
        self.client.loop_start()
        if first:
            self.client.subscribe("soak/#", qos=self.qos)
            if not self.subscribed.wait(10):
                raise RuntimeError(f"{self.name}: no SUBACK")

    def disconnect(self):
        self.client.disconnect()
        self.client.loop_stop()


def churn(port, stop, rng, counters):
    while not stop.is_set():
        version = rng.choice([5, 4])
        proto = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
        kwargs = {} if version == 5 else {"clean_session": rng.random() < 0.7}
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"churn-{rng.randrange(200)}", protocol=proto, **kwargs)
        try:
            if version == 5:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = rng.choice([0, 0, 30])
                c.connect("127.0.0.1", port, properties=props)
            else:
                c.connect("127.0.0.1", port)
            c.loop_start()
            for _ in range(rng.randrange(1, 6)):
                f = rng.choice(["churn/#", "churn/+/x", "other/t", "soak/none"])
                c.subscribe(f, qos=rng.randrange(3))
                c.publish(f"churn/{rng.randrange(10)}/x", b"c" * rng.randrange(1, 512), qos=rng.randrange(3))
                if rng.random() < 0.5:
                    c.unsubscribe(f)
            time.sleep(rng.random() * 0.2)
            c.disconnect()
            c.loop_stop()
            counters["churn"] += 1
        except OSError:
            counters["churn_errors"] += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mqtt5d", required=True)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    print(f"seed {seed}", flush=True)
    rng = random.Random(seed)
    port = free_port()
    data = tempfile.mkdtemp(prefix="mqtt5-soak-")
    broker = subprocess.Popen(
        [args.mqtt5d, "--listen", f"127.0.0.1:{port}", "--data-dir", data, "--log-level", "warn"],
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        checkers = [
            Checker(port, f"check-{i}", persistent, version, qos)
            for i, (persistent, version, qos) in enumerate(
                [(True, 5, 1), (True, 5, 2), (True, 4, 1), (False, 5, 1), (False, 4, 2), (True, 4, 2)]
            )
        ]
        for c in checkers:
            c.connect(first=True)
        online = {c.name: True for c in checkers}
        # What each checker must get: the published QoS 1/2 sequence numbers, and the QoS of each.
        published = []  # (seq, qos)
        counters = {"churn": 0, "churn_errors": 0}
        stop = threading.Event()
        churners = [threading.Thread(target=churn, args=(port, stop, random.Random(seed + i), counters), daemon=True) for i in range(4)]
        for t in churners:
            t.start()
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-pub", protocol=mqtt.MQTTv5)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        start = time.time()
        end = start + args.minutes * 60
        samples = [(0.0, rss_kib(broker.pid))]
        next_sample = start + 60
        seq = 0
        print("minute rss_kib published churn_sessions", flush=True)
        while time.time() < end:
            if broker.poll() is not None:
                print("FAIL: the broker exited", flush=True)
                return 1
            qos = rng.choice([1, 2])
            info = pub.publish(f"soak/{seq % 16}", f"m:{seq}".encode(), qos=qos)
            info.wait_for_publish(30)
            published.append((seq, qos))
            seq += 1
            # Persistent checkers go offline and come back now and then.
            if rng.random() < 0.01:
                c = rng.choice([c for c in checkers if c.persistent])
                if online[c.name]:
                    c.disconnect()
                    online[c.name] = False
                else:
                    c.connect(first=False)
                    online[c.name] = True
            time.sleep(0.005)
            if time.time() >= next_sample:
                samples.append(((time.time() - start) / 60, rss_kib(broker.pid)))
                print(f"{samples[-1][0]:.1f} {samples[-1][1]} {seq} {counters['churn']}", flush=True)
                next_sample += 60
        stop.set()
        for t in churners:
            t.join(30)
        for c in checkers:
            if not online[c.name]:
                c.connect(first=False)
        # Drain: wait until nothing new arrives for 3 s (bounded to 60 s).
        deadline = time.time() + 60
        last = -1
        while time.time() < deadline:
            total = sum(len(c.got) for c in checkers)
            if total == last:
                break
            last = total
            time.sleep(3)
        samples.append(((time.time() - start) / 60, rss_kib(broker.pid)))
        failures = []
        for c in checkers:
            missing = [s for s, q in published if s not in c.got]
            dup2 = [s for s, q in published if q == 2 and min(q, c.qos) == 2 and c.got.get(s, 0) > 1]
            if missing:
                failures.append(f"{c.name}: {len(missing)} missing, e.g. {missing[:5]}")
            if dup2:
                failures.append(f"{c.name}: {len(dup2)} QoS 2 duplicates")
        half = [r for t, r in samples if t >= args.minutes / 2]
        growth = (max(half) - min(half)) / max(min(half), 1) if half else 0
        print(f"published {seq} QoS 1/2 messages; churned {counters['churn']} client sessions ({counters['churn_errors']} errors)")
        print("rss_kib samples: " + ", ".join(f"{t:.1f} min {r}" for t, r in samples))
        print(f"RSS change over the second half: {growth * 100:.1f} %")
        for f in failures:
            print("FAIL:", f)
        if growth > 0.20:
            print("FAIL: RSS still growing after warm-up")
        ok = not failures and growth <= 0.20
        print("PASS" if ok else "FAIL", flush=True)
        return 0 if ok else 1
    finally:
        broker.send_signal(signal.SIGTERM)
        try:
            broker.wait(20)
        except subprocess.TimeoutExpired:
            broker.kill()


if __name__ == "__main__":
    sys.exit(main())
