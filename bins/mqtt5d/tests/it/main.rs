//! mqtt5d end to end: the real binary on a loopback port, driven by third-party clients
//! (mosquitto_pub / mosquitto_sub, Python paho-mqtt, and the rumqttc crate).

mod auth_reload;
mod backpressure;
mod conformance;
mod crash;
mod harness;
mod hostile;
mod interop;
mod lifecycle;
mod linger;
mod machine;
mod metrics;
mod rumqttc_suite;
mod security;
mod tls;
mod websocket;
mod ws_client;
