//! Interoperability with real clients.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::*;

/// A running `mosquitto_sub`, with its output lines.
struct Sub {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Sub {
    /// Starts `mosquitto_sub -d` and waits (bounded) until its SUBACK arrives.
    fn start(port: &str, args: &[&str]) -> Self {
        // stdbuf: mosquitto_sub's debug lines are block-buffered on a pipe otherwise.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-d"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub runs (installed by scripts/test-all.sh)");
        let out = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let sub = Self { child, lines };
        sub.wait_for("SUBACK", Duration::from_secs(10))
            .expect("mosquitto_sub got its SUBACK");
        sub
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        let end = Instant::now() + timeout;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mosquitto_clients_exchange_qos1_messages_in_v5_v311_and_v31() {
    let dir = temp_dir();
    let broker = Mqtt5d::start(dir.path(), &[]);
    let port = broker.port();
    for version in ["mqttv5", "mqttv311", "mqttv31"] {
        let topic = format!("it/{version}");
        let sub = Sub::start(&port, &["-V", version, "-q", "1", "-v", "-t", "it/#"]);
        mosquitto_pub(
            &port,
            &["-V", version, "-q", "1", "-t", &topic, "-m", "hello"],
        );
        let line = sub
            .wait_for(&format!("{topic} hello"), Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{version}: the message did not arrive"));
        assert!(line.ends_with("hello"));
    }
}

#[test]
fn mqtt311_publisher_reaches_mqtt5_subscriber_with_retained_message() {
    let dir = temp_dir();
    let broker = Mqtt5d::start(dir.path(), &[]);
    let port = broker.port();
    mosquitto_pub(
        &port,
        &[
            "-V",
            "mqttv311",
            "-q",
            "1",
            "-r",
            "-t",
            "state/door",
            "-m",
            "open",
        ],
    );
    let sub = Sub::start(&port, &["-V", "mqttv5", "-v", "-t", "state/#"]);
    assert!(
        sub.wait_for("state/door open", Duration::from_secs(10))
            .is_some()
    );
}

/// Runs a paho-mqtt 2.x script against the broker; it prints "ok" on success.
fn paho(port: &str, script: &str) -> String {
    let (status, out, err) = run_bounded(
        Command::new(python()).args(["-c", script, port]),
        Duration::from_secs(30),
    );
    assert!(
        status.success(),
        "paho script failed:\nstdout: {out}\nstderr: {err}"
    );
    out
}

const PAHO_V5_PROPERTIES: &str = r#"
import sys, threading
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

port = int(sys.argv[1])
got = threading.Event()
subscribed = threading.Event()
result = {}

def on_connect(c, userdata, flags, reason, props):
    result["connack"] = reason.value
    result["receive_max"] = getattr(props, "ReceiveMaximum", None)
    sp = Properties(PacketTypes.SUBSCRIBE)
    sp.SubscriptionIdentifier = 7
    c.subscribe("paho/#", qos=2, properties=sp)

def on_subscribe(c, userdata, mid, reasons, props):
    result["suback"] = [r.value for r in reasons]
    subscribed.set()

def on_message(c, userdata, msg):
    p = msg.properties
    result["topic"] = msg.topic
    result["payload"] = msg.payload.decode()
    result["qos"] = msg.qos
    result["user"] = getattr(p, "UserProperty", None)
    result["ctype"] = getattr(p, "ContentType", None)
    result["corr"] = getattr(p, "CorrelationData", None)
    result["subid"] = getattr(p, "SubscriptionIdentifier", None)
    got.set()

c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-v5", protocol=mqtt.MQTTv5)
c.on_connect = on_connect
c.on_subscribe = on_subscribe
c.on_message = on_message
c.connect("127.0.0.1", port)
c.loop_start()
assert subscribed.wait(10), "no SUBACK"
pp = Properties(PacketTypes.PUBLISH)
pp.UserProperty = [("trace", "abc")]
pp.ContentType = "text/plain"
pp.CorrelationData = b"\x01\x02"
c.publish("paho/x", "hi", qos=2, properties=pp).wait_for_publish(10)
assert got.wait(10), "no message"
c.disconnect()
c.loop_stop()
assert result["connack"] == 0, result
assert result["suback"] == [2], result
assert (result["topic"], result["payload"], result["qos"]) == ("paho/x", "hi", 2), result
assert result["user"] == [("trace", "abc")], result
assert result["ctype"] == "text/plain", result
assert result["corr"] == b"\x01\x02", result
assert result["subid"] == [7], result
print("ok")
"#;

#[test]
fn paho_v5_passes_properties_and_subscription_identifiers_through_qos2() {
    let dir = temp_dir();
    let broker = Mqtt5d::start(dir.path(), &[]);
    assert_eq!(paho(&broker.port(), PAHO_V5_PROPERTIES).trim(), "ok");
}

#[test]
fn rumqttc_v5_client_subscribes_and_receives() {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{Client, Event, MqttOptions, mqttbytes::v5::Packet};
    let dir = temp_dir();
    let broker = Mqtt5d::start(dir.path(), &[]);
    let mut options = MqttOptions::new("rumqttc-it", "127.0.0.1", broker.addr.port());
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut connection) = Client::new(options, 16);
    client
        .subscribe("rq/#", QoS::AtLeastOnce)
        .expect("subscribe queued");
    let end = Instant::now() + Duration::from_secs(20);
    let mut published = false;
    let mut received = None;
    for event in connection.iter() {
        assert!(Instant::now() < end, "no message within 20 s");
        match event {
            Ok(Event::Incoming(Packet::SubAck(_))) if !published => {
                client
                    .publish("rq/t", QoS::AtLeastOnce, false, "from rumqttc")
                    .expect("publish queued");
                published = true;
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                received = Some((p.topic.to_vec(), p.payload.to_vec()));
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("rumqttc connection error: {e}"),
        }
    }
    assert_eq!(received, Some((b"rq/t".to_vec(), b"from rumqttc".to_vec())));
}

#[test]
fn ipv6_loopback_listener_serves_mosquitto_clients() {
    let dir = temp_dir();
    let broker = Mqtt5d::start_raw(dir.path(), &["--listen", "[::1]:0"]);
    assert!(broker.addr.is_ipv6());
    let port = broker.port();
    let (status, out, err) = run_bounded(
        Command::new("mosquitto_pub").args([
            "-h", "::1", "-p", &port, "-q", "1", "-r", "-t", "v6/t", "-m", "six",
        ]),
        Duration::from_secs(10),
    );
    assert!(status.success(), "{out}{err}");
    let (status, out, err) = run_bounded(
        Command::new("mosquitto_sub").args([
            "-h", "::1", "-p", &port, "-t", "v6/t", "-C", "1", "-W", "10",
        ]),
        Duration::from_secs(15),
    );
    assert!(status.success(), "{out}{err}");
    assert_eq!(out.trim(), "six");
}
