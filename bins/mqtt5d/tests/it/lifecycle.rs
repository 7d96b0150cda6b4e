//! Start-up, shutdown, persistence and bad input at the process level.

use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const PAHO_SHUTDOWN: &str = r#"
import sys, threading
import paho.mqtt.client as mqtt
port = int(sys.argv[1])
connected = threading.Event()
gone = threading.Event()
result = {}
def on_connect(c, u, f, reason, p):
    connected.set()
def on_disconnect(c, u, flags, reason, p):
    result["reason"] = reason.value
    gone.set()
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-down", protocol=mqtt.MQTTv5)
c.on_connect = on_connect
c.on_disconnect = on_disconnect
c.connect("127.0.0.1", port)
c.loop_start()
assert connected.wait(10)
print("connected", flush=True)
assert gone.wait(30), "no disconnect"
print(result["reason"], flush=True)
"#;

#[test]
fn sigterm_disconnects_mqtt5_clients_with_0x8b_and_exits_0() {
    let dir = temp_dir();
    let mut broker = Mqtt5d::start(dir.path(), &[]);
    let port = broker.port();
    let client = std::thread::spawn(move || {
        run_bounded(
            Command::new("python3").args(["-c", PAHO_SHUTDOWN, &port]),
            Duration::from_secs(40),
        )
    });
    broker
        .wait_for_log("paho-down", Duration::from_secs(10))
        .expect("the client connected");
    let status = broker.stop();
    assert!(status.success(), "exit status {status:?}");
    let (status, out, err) = client.join().expect("client thread");
    assert!(status.success(), "{out}{err}");
    assert!(
        out.lines().any(|l| l.trim() == "139"),
        "DISCONNECT 0x8B (139): {out}"
    );
}

#[test]
fn queued_qos1_message_survives_a_restart() {
    let dir = temp_dir();
    let mut broker = Mqtt5d::start(dir.path(), &[]);
    let port = broker.port();
    // A persistent 3.1.1 session (clean session off) subscribes, then goes away.
    let (status, out, err) = run_bounded(
        Command::new("mosquitto_sub").args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            "mqttv311",
            "-c",
            "-i",
            "keeper",
            "-q",
            "1",
            "-t",
            "durable/#",
            "-E",
        ]),
        Duration::from_secs(10),
    );
    assert!(status.success(), "{out}{err}");
    let (status, out, err) = run_bounded(
        Command::new("mosquitto_pub").args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-q",
            "1",
            "-t",
            "durable/x",
            "-m",
            "kept",
        ]),
        Duration::from_secs(10),
    );
    assert!(status.success(), "{out}{err}");
    assert!(broker.stop().success());
    let broker = Mqtt5d::start(dir.path(), &[]);
    let port = broker.port();
    let (status, out, err) = run_bounded(
        Command::new("mosquitto_sub").args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            "mqttv311",
            "-c",
            "-i",
            "keeper",
            "-q",
            "1",
            "-t",
            "durable/#",
            "-C",
            "1",
            "-W",
            "10",
            "-v",
        ]),
        Duration::from_secs(20),
    );
    assert!(status.success(), "{out}{err}");
    assert_eq!(out.trim(), "durable/x kept");
}

#[test]
fn corrupt_database_is_an_error_and_is_left_untouched() {
    let dir = temp_dir();
    let path = db_path(dir.path());
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&path, &garbage).expect("write");
    let (status, _out, err) = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_mqtt5d")).args([
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &dir.path().display().to_string(),
        ]),
        Duration::from_secs(20),
    );
    assert!(!status.success());
    assert!(err.contains("corrupt"), "stderr: {err}");
    assert_eq!(std::fs::read(&path).expect("read"), garbage, "never wiped");
}

#[test]
fn bad_config_file_is_an_error_with_its_line() {
    let dir = temp_dir();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "max_connections = 10\n[broker]\nreceive_maximum = \"lots\"\n",
    )
    .expect("write");
    let (status, _out, err) = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_mqtt5d"))
            .args(["--config", &config.display().to_string()]),
        Duration::from_secs(20),
    );
    assert!(!status.success());
    assert!(err.contains('3'), "the error names line 3: {err}");
}
