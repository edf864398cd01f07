//! A real headless Chromium driven over WebDriver: Debian's `chromium` and `chromium-driver`
//! (`chromedriver` on a free loopback port, one browser per test, closed at the end).

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// A JavaScript expression: the legend's count of hosts in each state, by state.
pub const LEGEND: &str = "Object.fromEntries([...document.querySelectorAll('#legend li')].map(l => [l.dataset.sCount, Number(l.dataset.count)]))";

pub struct Browser {
    pub c: Client,
    _driver: Guard,
}

/// chromedriver and the browser it started (its own process group), stopped however the
/// test ends: a failed test leaves no Chromium behind to load the next ones.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let pid = self.0.id();
        // Only a group of its own: never the group of the test run itself.
        let own_group = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let after_name = stat.rsplit_once(") ")?.1.to_string();
                after_name.split_whitespace().nth(2)?.parse::<u32>().ok()
            })
            == Some(pid);
        if own_group {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Option<String> {
    std::env::var("KUP_CHROMEDRIVER")
        .ok()
        .or_else(|| Some("/usr/bin/chromedriver".to_string()))
        .filter(|p| std::path::Path::new(p).exists())
}

/// The browser binary itself (Debian's `/usr/bin/chromium` is a wrapper script around it).
fn chromium() -> Option<&'static str> {
    ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// A fresh browser, or `None` (the test skips) when Chromium is not installed, unless
    /// `KUP_REQUIRE_CHROMIUM=1` (`.ci/run`) makes that a failure.
    pub async fn start(width: u32, height: u32) -> Option<Browser> {
        let (Some(driver), Some(chrome)) = (chromedriver(), chromium()) else {
            assert!(
                std::env::var("KUP_REQUIRE_CHROMIUM").is_err(),
                "KUP_REQUIRE_CHROMIUM is set but chromium or chromedriver is missing"
            );
            eprintln!("skipped: Debian's chromium and chromium-driver are not installed");
            return None;
        };
        let port = free_port();
        let child = Command::new(driver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut caps = serde_json::Map::new();
        // The HTTPS test's certificate is signed by a CA minted for the run, which the
        // browser's own store does not hold.
        caps.insert("acceptInsecureCerts".into(), Value::Bool(true));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chrome,
                "args": [
                    "--headless=new",
                    // Root in a container has no sandbox to enter.
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                    format!("--window-size={width},{height}"),
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let guard = Guard(child);
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => return Some(Browser { c, _driver: guard }),
                Err(e) if Instant::now() > deadline => panic!("chromedriver: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Runs `script` (a function body) in the page and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.c
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits until `script` returns `true`, at most `secs` seconds; panics with `what`.
    pub async fn until(&self, secs: u64, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            // A script that throws (an element not there yet) is not there yet either.
            if let Ok(Value::Bool(true)) = self.c.execute(script, vec![]).await {
                return;
            }
            if Instant::now() > deadline {
                let status = self.js("return document.getElementById('status') ? document.getElementById('status').textContent : ''").await;
                panic!("timed out after {secs} s waiting for {what} (status line: {status})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        self.c
            .find(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("no {selector}: {e}"))
    }

    pub async fn text(&self, selector: &str) -> String {
        self.css(selector).await.text().await.unwrap()
    }

    pub async fn click(&self, selector: &str) {
        self.css(selector).await.click().await.unwrap();
    }

    /// Opens the dashboard at `base` and waits for its sign-in form.
    pub async fn open(&self, base: &str) {
        self.c.goto(&format!("{base}/")).await.unwrap();
        self.until(
            10,
            "the sign-in form",
            "return !document.getElementById('login').hidden",
        )
        .await;
    }

    /// Waits until the grid has `n` cells.
    pub async fn until_grid(&self, secs: u64, n: usize) {
        let what = format!("the grid of {n} hosts");
        let script = format!("return document.querySelectorAll('#grid .cell').length === {n}");
        self.until(secs, &what, &script).await;
    }

    /// Waits until `host`'s cell shows `state`.
    pub async fn until_tile(&self, secs: u64, host: &str, state: &str) {
        let what = format!("{host} {state} on the grid");
        let script = format!(
            "const c = document.querySelector('#grid .cell[data-host=\"{host}\"]'); \
             return c !== null && c.dataset.s === '{state}';"
        );
        self.until(secs, &what, &script).await;
    }

    /// The legend's count of hosts in each state.
    pub async fn legend(&self) -> Value {
        self.js(&format!("return {LEGEND};")).await
    }

    /// Signs in on the page's form with `token`.
    pub async fn sign_in(&self, token: &str) {
        let input = self.css("#token").await;
        input.clear().await.unwrap();
        input.send_keys(token).await.unwrap();
        self.click("#login-submit").await;
    }

    pub async fn screenshot(&self, path: &std::path::Path) {
        let png = self.c.screenshot().await.unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Ends the WebDriver session (the browser quits), then chromedriver.
    pub async fn close(self) {
        let _ = self.c.close().await;
    }
}
