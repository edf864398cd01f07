//! `kup`: the binary is glue. Everything it runs lives in the library crates.

mod demo;
mod table;

use std::process::ExitCode;

const USAGE: &str = "\
kup: upgrades the Kubernetes of a self-managed cluster, one safe step at a time.

Usage:
  kup demo [--time-scale X]   run the seed's whole upgrade procedure on the built-in
                              simulated cluster (default time scale 0.002)
  kup --help                  this text
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => {
            let time_scale = match parse_time_scale(&args[1..]) {
                Ok(t) => t,
                Err(e) => return usage_error(&e),
            };
            let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
            match rt.block_on(demo::run(time_scale)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            }
        }
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => usage_error(&format!("unknown command {other:?}")),
        None => usage_error("no command given"),
    }
}

fn parse_time_scale(args: &[String]) -> Result<f64, String> {
    match args {
        [] => Ok(0.002),
        [flag, value] if flag == "--time-scale" => match value.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
            _ => Err(format!(
                "--time-scale needs a non-negative number, not {value:?}"
            )),
        },
        _ => Err(format!("unexpected arguments: {}", args.join(" "))),
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("Error: {message}\n\n{USAGE}");
    ExitCode::from(2)
}
