//! The reference articles' edge-to-cloud topology on one machine, for `stator demo --edge` and
//! the tests: a cloud hub (JetStream domain `hub`, one node or a cluster) and a factory's leaf
//! node (domain `edge`) connected through a TCP [`Proxy`] that can be cut and restored like a
//! WAN link.

use std::net::SocketAddr;
use std::path::Path;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::nats_server::{NatsServer, ServerConfig, ServerError, free_port};

/// A TCP proxy from a local port to `upstream`: the WAN link. A cut closes every open
/// connection and refuses new ones until restored. Stops on drop.
#[derive(Debug)]
pub struct Proxy {
    /// The address to connect to instead of the upstream.
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts forwarding a free local port to `upstream`.
    ///
    /// # Errors
    /// When no local port can be bound.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (up, state) = watch::channel(true);
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*state.borrow() {
                    continue; // cut: the connection is dropped at once
                }
                let mut state = state.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = state.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Ok(Self { addr, up, task })
    }

    /// Cuts the link: open connections are closed, new ones refused.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Restores the link.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }

    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The shape of a [`Wan`].
#[derive(Debug, Clone, Default)]
pub struct WanOptions {
    /// Hub nodes: 1, or 3 for the articles' cloud cluster.
    pub hub_nodes: usize,
    /// A port for an MQTT listener on the leaf node (the articles' device gateway).
    pub leaf_mqtt_port: Option<u16>,
}

/// A hub (domain `hub`) and a leaf node (domain `edge`) linked through a [`Proxy`].
///
/// The hub's leafnode listeners do not advertise themselves (`no_advertise`) and the first
/// one advertises the proxy, so the leaf only ever knows the proxy and a cut does cut. The
/// leaf retries the link every second.
#[derive(Debug)]
pub struct Wan {
    /// The hub's nodes; the leaf's link goes to the first.
    pub hub: Vec<NatsServer>,
    /// The factory's server.
    pub leaf: NatsServer,
    /// The WAN link.
    pub link: Proxy,
}

/// The JetStream domain of the hub.
pub const HUB_DOMAIN: &str = "hub";
/// The JetStream domain of the leaf node.
pub const EDGE_DOMAIN: &str = "edge";

impl Wan {
    /// Starts the hub's nodes, the proxy and the leaf node; each server keeps its config,
    /// store and log under `dir/<name>`.
    ///
    /// # Errors
    /// When a server does not start or no port is free.
    pub async fn start(dir: &Path, options: &WanOptions) -> Result<Self, ServerError> {
        let port = || free_port().map_err(|e| ServerError::Start(e.to_string()));
        let nodes = options.hub_nodes.max(1);
        let leaf_ports = (0..nodes).map(|_| port()).collect::<Result<Vec<_>, _>>()?;
        let route_ports = (0..nodes).map(|_| port()).collect::<Result<Vec<_>, _>>()?;
        // The proxy first, so the hub can name it as the only leafnode address it advertises.
        let link = Proxy::start(([127, 0, 0, 1], leaf_ports[0]).into())
            .await
            .map_err(|e| ServerError::Start(format!("proxy: {e}")))?;
        let routes: Vec<String> = route_ports.iter().map(|p| format!("\"nats-route://127.0.0.1:{p}\"")).collect();
        let mut hub = Vec::with_capacity(nodes);
        for (i, leaf_port) in leaf_ports.iter().enumerate() {
            let advertise = if i == 0 { format!(", advertise: \"{}\"", link.addr) } else { String::new() };
            let mut extra =
                format!("leafnodes {{ listen: \"127.0.0.1:{leaf_port}\", no_advertise: true{advertise} }}\n");
            if nodes > 1 {
                extra.push_str(&format!(
                    "cluster {{ name: \"{HUB_DOMAIN}\", listen: \"127.0.0.1:{}\", routes: [{}] }}\n",
                    route_ports[i],
                    routes.join(", ")
                ));
            }
            let name = if nodes > 1 { format!("{HUB_DOMAIN}-{i}") } else { HUB_DOMAIN.to_owned() };
            hub.push(server(dir, &name, HUB_DOMAIN, extra)?);
        }
        let mut remote =
            format!("leafnodes {{ reconnect: \"1s\", remotes: [ {{ url: \"nats-leaf://{}\" }} ] }}\n", link.addr);
        if let Some(mqtt) = options.leaf_mqtt_port {
            remote.push_str(&format!("mqtt {{ listen: \"127.0.0.1:{mqtt}\" }}\n"));
        }
        let leaf = server(dir, EDGE_DOMAIN, EDGE_DOMAIN, remote)?;
        Ok(Self { hub, leaf, link })
    }

    /// The hub's client URLs, comma-separated, as a pipeline's `url` takes them.
    pub fn hub_urls(&self) -> String {
        self.hub.iter().map(NatsServer::url).collect::<Vec<_>>().join(",")
    }

    /// Kills every hub node (a cloud outage).
    pub fn stop_hub(&mut self) {
        self.hub.iter_mut().for_each(NatsServer::stop);
    }

    /// Starts every hub node again with its store.
    ///
    /// # Errors
    /// When a node does not start.
    pub fn restart_hub(&mut self) -> Result<(), ServerError> {
        self.hub.iter_mut().try_for_each(NatsServer::restart)
    }
}

/// A server named `name` with JetStream domain `domain`, in `dir/name`.
fn server(dir: &Path, name: &str, domain: &str, extra: String) -> Result<NatsServer, ServerError> {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| ServerError::Start(format!("{}: {e}", dir.display())))?;
    let port = free_port().map_err(|e| ServerError::Start(e.to_string()))?;
    let config = ServerConfig { name: name.into(), port, jetstream_domain: Some(domain.into()), extra };
    NatsServer::start_with(&dir, &config)
}
