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
            Command::new(python()).args(["-c", PAHO_SHUTDOWN, &port]),
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
    mosquitto_pub(&port, &["-q", "1", "-t", "durable/x", "-m", "kept"]);
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

const PAHO_FILL_STORE: &str = r#"
import sys, threading
import paho.mqtt.client as mqtt
port = int(sys.argv[1])
acks = {}
acked = threading.Condition()
got = threading.Event()
subscribed = threading.Event()
def on_publish(c, u, mid, reason, props):
    with acked:
        acks[mid] = reason.value
        acked.notify_all()
def on_subscribe(c, u, mid, reasons, props):
    subscribed.set()
def on_message(c, u, msg):
    if msg.topic == "live/after":
        got.set()
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="filler", protocol=mqtt.MQTTv5)
c.on_publish = on_publish
c.on_subscribe = on_subscribe
c.on_message = on_message
c.connect("127.0.0.1", port)
c.loop_start()
c.subscribe("live/#", qos=0)
assert subscribed.wait(10)
refused = None
payload = b"x" * 16384
for i in range(200):
    info = c.publish("fill/%d" % i, payload, qos=1, retain=True)
    with acked:
        # A withheld acknowledgement (its batch failed) is fine: move on after a moment.
        acked.wait_for(lambda: info.mid in acks, timeout=2)
    if acks.get(info.mid) == 151:
        refused = i
        break
assert refused is not None, "never refused: %s" % sorted(set(acks.values()))
# QoS 0 traffic still flows.
c.publish("live/after", b"still here", qos=0)
assert got.wait(10), "QoS 0 stopped"
c.disconnect()
c.loop_stop()
print("refused at", refused)
"#;

#[test]
fn full_store_refuses_new_persistent_work_with_0x97_and_keeps_serving() {
    let dir = temp_dir();
    let config = dir.path().join("small.toml");
    std::fs::write(&config, "[storage]\nmax_size_kib = 256\n").expect("write");
    let mut broker = Mqtt5d::start(dir.path(), &["--config", &config.display().to_string()]);
    let port = broker.port();
    let (status, out, err) = run_bounded(
        Command::new(python()).args(["-c", PAHO_FILL_STORE, &port]),
        Duration::from_secs(120),
    );
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("refused at"), "{out}");
    assert!(
        broker
            .wait_for_log("storage full", Duration::from_secs(5))
            .is_some(),
        "the broker logged the full store"
    );
    assert!(broker.stop().success(), "it still shuts down cleanly");
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let dir = temp_dir();
    let config = dir.path().join("metrics.toml");
    std::fs::write(&config, "[metrics]\nlisten = \"127.0.0.1:0\"\n").expect("write");
    let mut broker = Mqtt5d::start(dir.path(), &["--config", &config.display().to_string()]);
    let addr = broker.metrics_addr().expect("the metrics endpoint started");
    let port = broker.port();
    mosquitto_pub(&port, &["-q", "1", "-r", "-t", "m/t", "-m", "x"]);
    wait_for_metric(
        addr,
        "mqtt5_messages_received_total",
        1,
        Duration::from_secs(10),
    )
    .expect("the metrics show the message");
    let body = metrics_text(addr).expect("GET /metrics");
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    for name in [
        "# TYPE mqtt5_connections gauge",
        "mqtt5_messages_received_total 1",
        "mqtt5_retained_messages 1",
        "mqtt5_store_commits_total",
        "mqtt5_bytes_received_total",
    ] {
        assert!(body.contains(name), "missing {name}:\n{body}");
    }
    assert!(broker.stop().success());
}

#[test]
fn subscriber_that_never_reads_does_not_stall_the_publisher_or_grow_the_broker() {
    use bytes::BytesMut;
    use mqtt5_codec::{
        Connect, MqttString, Packet, PacketId, ProtocolVersion, QoS, Subscribe, Subscription,
        SubscriptionOptions, TopicFilter,
    };
    use std::io::Write;
    let dir = temp_dir();
    let config = dir.path().join("small-buffers.toml");
    std::fs::write(
        &config,
        "write_buffer_limit = 262144\n[broker]\nmax_queued_messages = 100\n",
    )
    .expect("write");
    let mut broker = Mqtt5d::start(dir.path(), &["--config", &config.display().to_string()]);
    // A raw MQTT 5 subscriber that connects, subscribes, and then never reads a byte.
    let mut stalled = std::net::TcpStream::connect(broker.addr).expect("connect");
    let mut wire = BytesMut::new();
    Packet::Connect(Box::new(Connect {
        client_id: MqttString::try_from("stalled").expect("id"),
        keep_alive: 0,
        ..Connect::default()
    }))
    .encode(ProtocolVersion::V5, &mut wire);
    Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).expect("id"),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: TopicFilter::try_from("flood/#").expect("filter"),
            options: SubscriptionOptions::new(QoS::AtMostOnce),
        }],
    })
    .encode(ProtocolVersion::V5, &mut wire);
    stalled.write_all(&wire).expect("send");
    broker
        .wait_for_log("stalled", Duration::from_secs(10))
        .expect("the stalled client connected");
    // 20,000 messages of 1 KiB (20 MB) from one publisher, far more than the socket buffers
    // and the 256 KiB write buffer hold.
    let payload = "x".repeat(1024);
    let lines: String = (0..20_000).map(|_| format!("{payload}\n")).collect();
    let mut publisher = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port(),
            "-t",
            "flood/t",
            "-l",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    publisher
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.as_bytes())
        .expect("feed the publisher");
    let end = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = publisher.try_wait().expect("wait") {
            break status;
        }
        assert!(std::time::Instant::now() < end, "the publisher was stalled");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    broker
        .wait_for_log("client congested", Duration::from_secs(10))
        .expect("the stalled client was marked congested");
    // The broker still serves others.
    mosquitto_pub(&broker.port(), &["-r", "-t", "ok/t", "-m", "alive"]);
    let (status, out, err) = run_bounded(
        Command::new("mosquitto_sub").args([
            "-h",
            "127.0.0.1",
            "-p",
            &broker.port(),
            "-t",
            "ok/t",
            "-C",
            "1",
            "-W",
            "10",
        ]),
        Duration::from_secs(15),
    );
    assert!(status.success(), "{out}{err}");
    assert_eq!(out.trim(), "alive");
    drop(stalled);
    assert!(broker.stop().success());
}

#[test]
fn connections_past_the_limit_are_refused_and_others_keep_working() {
    use std::io::Read;
    let dir = temp_dir();
    let broker = Mqtt5d::start(dir.path(), &["--max-connections", "2"]);
    let first = std::net::TcpStream::connect(broker.addr).expect("first");
    let second = std::net::TcpStream::connect(broker.addr).expect("second");
    // The third is accepted by the kernel, then closed by the broker at once.
    let mut third = std::net::TcpStream::connect(broker.addr).expect("third");
    third
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 1];
    let n = third.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the broker closed the connection past its limit");
    drop((first, second));
    // Once those are gone, clients are served again (bounded retries: the broker notices the
    // closed sockets on its next turn).
    let mut served = false;
    for _ in 0..50 {
        let (status, _out, _err) = run_bounded(
            Command::new("mosquitto_pub").args([
                "-h",
                "127.0.0.1",
                "-p",
                &broker.port(),
                "-t",
                "limit/t",
                "-m",
                "x",
            ]),
            Duration::from_secs(10),
        );
        if status.success() {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served);
}
