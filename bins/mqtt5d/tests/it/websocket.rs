//! MQTT over WebSocket (MQTT 5 §6), with paho-mqtt's websockets transport.

use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const PAHO_WS: &str = r#"
import sys, threading
import paho.mqtt.client as mqtt
port = int(sys.argv[1]); path = sys.argv[2]; version = sys.argv[3]
got = threading.Event(); subscribed = threading.Event(); result = {}
proto = mqtt.MQTTv5 if version == "5" else mqtt.MQTTv311
def on_connect(c, u, f, reason, p):
    result["connack"] = reason.value if hasattr(reason, "value") else reason
    c.subscribe("ws/#", qos=1)
def on_subscribe(c, u, mid, reasons, p):
    subscribed.set()
def on_message(c, u, msg):
    result["msg"] = (msg.topic, msg.payload.decode(), msg.qos)
    got.set()
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-ws-" + version, protocol=proto, transport="websockets")
c.ws_set_options(path=path)
c.on_connect = on_connect; c.on_subscribe = on_subscribe; c.on_message = on_message
c.connect("127.0.0.1", port)
c.loop_start()
assert subscribed.wait(10), "no SUBACK"
c.publish("ws/t", "over websocket", qos=1).wait_for_publish(10)
assert got.wait(10), "no message"
c.disconnect(); c.loop_stop()
assert result["msg"] == ("ws/t", "over websocket", 1), result
print("ok")
"#;

fn ws_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("ws.toml");
    std::fs::write(
        &path,
        "[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"websocket\"\npath = \"/mqtt\"\nallow_anonymous = true\n",
    )
    .expect("write");
    path
}

#[test]
fn websocket_listener_serves_paho_over_websockets_in_v5_and_v311() {
    let dir = temp_dir();
    let config = ws_config(dir.path());
    let mut broker = Mqtt5d::start_raw(dir.path(), &["--config", &config.display().to_string()]);
    assert!(
        broker
            .lines
            .iter()
            .any(|l| l.contains("MQTT over WebSocket"))
    );
    for version in ["5", "4"] {
        let (status, out, err) = run_bounded(
            Command::new(python()).args(["-c", PAHO_WS, &broker.port(), "/mqtt", version]),
            Duration::from_secs(30),
        );
        assert!(status.success(), "v{version}: {out}{err}");
        assert_eq!(out.trim(), "ok");
    }
    assert!(broker.stop().success());
}

#[test]
fn websocket_upgrade_on_another_path_is_refused() {
    let dir = temp_dir();
    let config = ws_config(dir.path());
    let broker = Mqtt5d::start_raw(dir.path(), &["--config", &config.display().to_string()]);
    let (status, _out, _err) = run_bounded(
        Command::new(python()).args(["-c", PAHO_WS, &broker.port(), "/elsewhere", "5"]),
        Duration::from_secs(30),
    );
    assert!(
        !status.success(),
        "a client on the wrong path does not get through"
    );
}
