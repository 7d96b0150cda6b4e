//! `mqtt5d`, the mqtt5 broker binary.
//!
//! The event loop, listeners and configuration arrive with issue 5. Until then the binary
//! reports its version and says plainly that it cannot serve yet.

use std::process::ExitCode;

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version" | "-V") => {
            println!("mqtt5d {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "mqtt5d {}: the broker is not built yet; only the codec is (see README.md)",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::from(2)
        }
    }
}
