//! The HTTP server loop: hyper with the limits a daemon on a shared network needs. A client
//! that sends half its headers, or holds a connection idle, is dropped after the header-read
//! timeout; a body that stops arriving fails its request; and connections beyond the cap
//! wait in the kernel's backlog instead of taking memory.
//!
//! With TLS, every connection is HTTPS: its handshake must end within the header-read
//! timeout, and a client that speaks plain HTTP to the port gets one error reply (saying to
//! use https://) and nothing of the API.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::header;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Time to receive a request's headers, and the longest a connection may sit idle
    /// between requests.
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_read_timeout: Duration,
    pub max_connections: usize,
    /// How long a graceful stop waits for requests in progress.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Serves `app` on `listener` (HTTPS only when `tls` is given) until `shutdown` resolves,
/// then lets the requests in progress finish (for at most `shutdown_grace`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_read_timeout,
    ));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let conn = Conn {
            http: http.clone(),
            app: app.clone(),
            watcher: graceful.watcher(),
            stopping: stopping.clone(),
        };
        let tls = tls.clone();
        let handshake_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            match tls {
                None => conn.serve(stream).await,
                Some(tls) => conn.serve_tls(stream, tls, handshake_timeout).await,
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in progress at shutdown were cut off");
    }
}

/// What serving one connection needs.
struct Conn {
    http: hyper::server::conn::http1::Builder,
    app: Router,
    /// Held from the accept on, so a graceful stop waits for a handshake in progress too.
    watcher: Watcher,
    /// Becomes true when the daemon stops.
    stopping: tokio::sync::watch::Receiver<bool>,
}

/// The first byte of a TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

impl Conn {
    async fn serve<S>(self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let conn = self
            .http
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(self.app));
        if let Err(e) = self.watcher.watch(conn).await {
            tracing::debug!(error = %e, "connection ended");
        }
    }

    async fn serve_tls(self, stream: TcpStream, tls: TlsAcceptor, timeout: Duration) {
        let mut stopping = self.stopping.clone();
        let hello = async {
            let mut first = [0u8; 1];
            if stream.peek(&mut first).await? == 0 {
                return Ok(Hello::Closed);
            }
            if first[0] != TLS_HANDSHAKE {
                return Ok(Hello::Plain(stream));
            }
            tls.accept(stream).await.map(|s| Hello::Tls(Box::new(s)))
        };
        let hello = tokio::select! {
            hello = tokio::time::timeout(timeout, hello) => hello,
            // A stop drops the handshakes in progress (no request was made on them yet), as
            // hyper closes idle connections: a client that never says hello holds up nothing.
            _ = stopping.wait_for(|stop| *stop) => return,
        };
        match hello {
            Ok(Ok(Hello::Tls(stream))) => self.serve(stream).await,
            Ok(Ok(Hello::Plain(stream))) => {
                let refuse = Conn {
                    app: plain_http_refused(),
                    ..self
                };
                refuse.serve(stream).await;
            }
            Ok(Ok(Hello::Closed)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
    }
}

/// How a connection to the HTTPS port began.
enum Hello {
    // Boxed: a TLS stream is a kilobyte or more, the other two a few words.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Not with a TLS handshake: plain HTTP, most likely.
    Plain(TcpStream),
    Closed,
}

/// What answers plain HTTP on the HTTPS port: every request, with sysinv's error body (so
/// kup's client shows the reason as it is), and the connection closed after it.
fn plain_http_refused() -> Router {
    Router::new().fallback(|| async {
        (
            [(header::CONNECTION, "close")],
            kup_api::ApiError::bad_request(
                "This port serves HTTPS only: use an https:// URL (and --ca-file if its certificate is signed by a private CA)",
            ),
        )
    })
}
