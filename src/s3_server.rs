//! An S3-compatible server process for tests and benchmarks: moto's server mode.
//!
//! moto comes from PyPI (`make test` installs it into the virtual environment `.tools/s3`;
//! `STATOR_S3_PYTHON` names another Python that has it). Each server listens on its own free port and is killed on
//! drop; it can be paused (SIGSTOP) and resumed to play an outage without losing its data.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum S3ServerError {
    /// moto is not installed.
    #[error("moto not found: run `make setup` (installs it into .tools/s3) or set STATOR_S3_PYTHON")]
    NotFound,
    /// The process did not come up, or refused a request.
    #[error("S3 server: {0}")]
    Failed(String),
}

/// A running moto S3 server.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    port: u16,
}

/// The Python that runs moto: `$STATOR_S3_PYTHON`, else the `.tools/s3` environment.
fn python() -> Result<PathBuf, S3ServerError> {
    if let Some(p) = std::env::var_os("STATOR_S3_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    crate::nats_server::tool_path(".tools/s3/bin/python3").ok_or(S3ServerError::NotFound)
}

impl S3Server {
    /// Starts a server on a free port and waits until it answers.
    ///
    /// # Errors
    /// [`S3ServerError`] when moto is missing or does not start within 30 s.
    pub fn start() -> Result<Self, S3ServerError> {
        let port = crate::nats_server::free_port().map_err(|e| S3ServerError::Failed(e.to_string()))?;
        let child = Command::new(python()?)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| S3ServerError::Failed(format!("python3: {e}")))?;
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.request("GET", "/").is_err() {
            if Instant::now() > deadline {
                return Err(S3ServerError::Failed("no answer within 30 s".into()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// The endpoint URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket.
    ///
    /// # Errors
    /// [`S3ServerError::Failed`] when the server refuses.
    pub fn create_bucket(&self, name: &str) -> Result<(), S3ServerError> {
        let status = self.request("PUT", &format!("/{name}"))?;
        if status == 200 { Ok(()) } else { Err(S3ServerError::Failed(format!("create bucket: HTTP {status}"))) }
    }

    /// Archive options for a pipeline or `stator query` against this server.
    pub fn options(&self) -> Vec<(String, String)> {
        [
            ("endpoint", self.endpoint()),
            ("region", "us-east-1".into()),
            ("access_key_id", "test".into()),
            ("secret_access_key", "test".into()),
            ("allow_http", "true".into()),
        ]
        .map(|(k, v)| (k.to_owned(), v))
        .to_vec()
    }

    /// Freezes the process (SIGSTOP): requests hang, nothing is lost.
    pub fn pause(&self) {
        signal(self.child.id(), "-STOP");
    }

    /// Thaws a paused process (SIGCONT).
    pub fn resume(&self) {
        signal(self.child.id(), "-CONT");
    }

    /// A bodiless request; returns the HTTP status.
    fn request(&self, method: &str, path: &str) -> Result<u16, S3ServerError> {
        let failed = |e: std::io::Error| S3ServerError::Failed(e.to_string());
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(failed)?;
        stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(failed)?;
        write!(stream, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .map_err(failed)?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).map_err(failed)?;
        std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| S3ServerError::Failed("not an HTTP answer".into()))
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
