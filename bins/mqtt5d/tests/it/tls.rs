//! TLS listeners, with certificates made by the `openssl` command for each test.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

/// Makes a CA, a server certificate for 127.0.0.1 / localhost, and a client certificate,
/// all signed by the CA, in `dir`.
pub(crate) fn make_certificates(dir: &Path) {
    crate::machine::machine();
    let run = |args: &[&str]| {
        let (status, out, err) = run_bounded(
            Command::new("openssl").args(args).current_dir(dir),
            Duration::from_secs(30),
        );
        assert!(status.success(), "openssl {args:?}: {out}{err}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=mqtt5 test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write");
    // webpki accepts only X.509 v3 certificates: the client one needs extensions too.
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .expect("write");
    for (name, ext) in [
        ("server", Some("server.ext")),
        ("client", Some("client.ext")),
    ] {
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
        args.push(format!("{name}.crt"));
        if let Some(ext) = ext {
            args.extend(["-extfile".to_owned(), ext.to_owned()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&refs);
    }
}

fn tls_config(dir: &Path, client_ca: bool) -> std::path::PathBuf {
    let mut text = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\ntls_cert = {:?}\ntls_key = {:?}\nallow_anonymous = true\n",
        dir.join("server.crt"),
        dir.join("server.key")
    );
    if client_ca {
        text.push_str(&format!("tls_client_ca = {:?}\n", dir.join("ca.crt")));
    }
    let path = dir.join("tls.toml");
    std::fs::write(&path, text).expect("write");
    path
}

fn pub_and_sub(port: &str, dir: &Path, client_cert: bool) -> (bool, String) {
    let ca = dir.join("ca.crt").display().to_string();
    let cert = dir.join("client.crt").display().to_string();
    let key = dir.join("client.key").display().to_string();
    let mut common = vec!["-h", "127.0.0.1", "-p", port, "--cafile", &ca];
    if client_cert {
        common.extend(["--cert", &cert, "--key", &key]);
    }
    let (status, out, err) = run_bounded(
        Command::new("mosquitto_pub").args(&common).args([
            "-V", "mqttv5", "-q", "1", "-r", "-t", "tls/t", "-m", "secret",
        ]),
        Duration::from_secs(15),
    );
    if !status.success() {
        return (false, format!("{out}{err}"));
    }
    let (status, out, err) = run_bounded(
        Command::new("mosquitto_sub")
            .args(&common)
            .args(["-V", "mqttv311", "-t", "tls/t", "-C", "1", "-W", "10"]),
        Duration::from_secs(15),
    );
    (status.success(), format!("{out}{err}"))
}

#[test]
fn tls_listener_serves_mosquitto_clients() {
    let dir = temp_dir();
    make_certificates(dir.path());
    let config = tls_config(dir.path(), false);
    let mut broker = Mqtt5d::start_raw(dir.path(), &["--config", &config.display().to_string()]);
    assert!(
        broker
            .wait_for_log("MQTT over TLS", Duration::from_secs(60))
            .is_some()
    );
    let (ok, out) = pub_and_sub(&broker.port(), dir.path(), false);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "secret");
    assert!(broker.stop().success());
}

#[test]
fn tls_listener_with_client_ca_requires_a_client_certificate() {
    let dir = temp_dir();
    make_certificates(dir.path());
    let config = tls_config(dir.path(), true);
    let mut broker = Mqtt5d::start_raw(dir.path(), &["--config", &config.display().to_string()]);
    let port = broker.port();
    let (ok, out) = pub_and_sub(&port, dir.path(), false);
    assert!(
        !ok,
        "without a client certificate the handshake fails: {out}"
    );
    let (ok, out) = pub_and_sub(&port, dir.path(), true);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "secret");
    assert!(broker.stop().success());
}

const PAHO_WSS: &str = r#"
import sys, threading
import paho.mqtt.client as mqtt
port = int(sys.argv[1]); ca = sys.argv[2]
got = threading.Event(); subscribed = threading.Event()
def on_connect(c, u, f, reason, p):
    c.subscribe("wss/#", qos=1)
def on_subscribe(c, u, mid, reasons, p):
    subscribed.set()
def on_message(c, u, msg):
    if msg.payload == b"over wss":
        got.set()
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-wss", protocol=mqtt.MQTTv5, transport="websockets")
c.ws_set_options(path="/mqtt")
c.tls_set(ca_certs=ca)
c.on_connect = on_connect; c.on_subscribe = on_subscribe; c.on_message = on_message
c.connect("127.0.0.1", port)
c.loop_start()
assert subscribed.wait(10), "no SUBACK"
c.publish("wss/t", "over wss", qos=1).wait_for_publish(10)
assert got.wait(10), "no message"
c.disconnect(); c.loop_stop()
print("ok")
"#;

#[test]
fn secure_websocket_listener_serves_paho() {
    let dir = temp_dir();
    make_certificates(dir.path());
    let config = dir.path().join("wss.toml");
    std::fs::write(
        &config,
        format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"websocket\"\ntls_cert = {:?}\ntls_key = {:?}\nallow_anonymous = true\n",
            dir.path().join("server.crt"),
            dir.path().join("server.key")
        ),
    )
    .expect("write");
    let mut broker = Mqtt5d::start_raw(dir.path(), &["--config", &config.display().to_string()]);
    assert!(
        broker
            .lines
            .iter()
            .any(|l| l.contains("MQTT over secure WebSocket"))
    );
    let ca = dir.path().join("ca.crt").display().to_string();
    let (status, out, err) = run_bounded(
        Command::new(python()).args(["-c", PAHO_WSS, &broker.port(), &ca]),
        Duration::from_secs(30),
    );
    assert!(status.success(), "{out}{err}");
    assert_eq!(out.trim(), "ok");
    assert!(broker.stop().success());
}

#[cfg(unix)]
#[test]
fn tls_key_others_can_read_is_warned_about_and_left_as_it_is() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = temp_dir();
    make_certificates(dir.path());
    let key = dir.path().join("server.key");
    // A plain listener first (the harness connects to it), then the TLS one.
    let config = dir.path().join("plain-and-tls.toml");
    std::fs::write(
        &config,
        format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\n\n[[listener]]\nbind = \"127.0.0.1:0\"\ntls_cert = {:?}\ntls_key = {:?}\n",
            dir.path().join("server.crt"),
            key
        ),
    )
    .expect("write");
    let config = config.display().to_string();
    let data = dir.path().join("data");
    let set_mode = |mode| {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    let mode = || std::fs::metadata(&key).expect("stat").permissions().mode() & 0o777;
    let about_the_key = |l: &&String| l.contains("TLS private key");

    // Private: no warning. (The files are checked before any listener binds.)
    set_mode(0o600);
    let mut broker = Mqtt5d::start_raw(&data, &["--config", &config]);
    assert!(
        broker
            .wait_for_log("MQTT over TLS", Duration::from_secs(60))
            .is_some()
    );
    assert!(
        !broker.lines.iter().any(|l| about_the_key(&l)),
        "{}",
        broker.lines.join("\n")
    );
    serving(&broker);
    assert!(broker.stop().success());

    // Readable by everyone: a WARN line naming the key; the file keeps its mode.
    set_mode(0o644);
    let mut broker = Mqtt5d::start_raw(&data, &["--config", &config]);
    let warning = broker
        .lines
        .iter()
        .find(about_the_key)
        .cloned()
        .unwrap_or_else(|| panic!("no warning about the key:\n{}", broker.lines.join("\n")));
    assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
    assert!(
        warning.contains("can be read or written by other users"),
        "{warning}"
    );
    assert!(warning.contains(&key.display().to_string()), "{warning}");
    serving(&broker);
    assert!(broker.stop().success());
    assert_eq!(mode(), 0o644);
}
