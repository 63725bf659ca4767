//! NATS authentication and TLS, each against a nats-server configured that way; secrets come
//! from the environment and never reach the logs.

use std::path::Path;
use std::process::{Command, Stdio};

use stator_engine::config::{Auth, Secret};
use stator_engine::worker::RunMode;

use crate::harness::*;

/// A pipeline over `rms_pipeline` with `extra` lines in `[source]`.
fn with_source_lines(extra: &str) -> String {
    rms_pipeline("2s", 1, "1h").replace("ack_wait = \"30s\"", &format!("ack_wait = \"30s\"\n{extra}"))
}

/// Creates the plant's streams and publishes 25 readings at 5 mm/s (one critical alert).
async fn plant_through(client: async_nats::Client) -> async_nats::jetstream::Context {
    let js = async_nats::jetstream::new(client);
    stator::plant::ensure_streams(&js).await.expect("streams");
    publish(&js, &(0..25).map(|s| Reading::rms("munich", "cnc-001", T0 + s * 1000, 5.0)).collect::<Vec<_>>()).await;
    js
}

async fn client_with(auth: &Auth, url: &str) -> async_nats::Client {
    let addrs = stator_engine::source::server_addrs(url).expect("url");
    stator_engine::source::options(auth).await.expect("options").connect(addrs).await.expect("connect")
}

#[tokio::test]
async fn user_and_password_from_the_environment_work_and_never_reach_the_logs() {
    let password = "pa55-W0rd-9f3c1e";
    let server = TestServer::start(&format!("authorization {{ user: \"stator\", password: \"{password}\" }}"));
    let auth = Auth { user: Some(("stator".into(), secret(password))), ..Auth::default() };
    let js = plant_through(client_with(&auth, &server.url()).await).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, with_source_lines("user = \"stator\"\npassword = \"${NATS_PASSWORD}\"")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stator"))
        .args(["run", "--drain"])
        .arg(&file)
        .env("NATS_URL", server.url())
        .env("NATS_PASSWORD", password)
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let logs = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{logs}");
    assert!(logs.len() > 1000, "a trace-level run logs plenty: {} bytes", logs.len());
    assert!(!logs.contains(password), "the password appears in the logs");
    assert_eq!(alerts(&js).await.len(), 1);

    // A wrong password is refused by the server.
    let wrong = Auth { user: Some(("stator".into(), secret("nope"))), ..Auth::default() };
    let refused =
        async_nats::ConnectOptions::new().user_and_password("stator".into(), "nope".into()).connect(server.url()).await;
    assert!(refused.is_err(), "{wrong:?}");
    assert!(!format!("{wrong:?}").contains("nope"), "secrets do not print");
}

fn secret(s: &str) -> Secret {
    // Through the config loader, the only way a Secret is made.
    let text = with_source_lines(&format!("user = \"u\"\npassword = \"{s}\""));
    let p = pipeline(&text, "nats://127.0.0.1:1");
    p.source.auth.user.expect("user").1
}

#[tokio::test]
async fn a_token_authenticates() {
    let token = "t0k3n-5e1f9a";
    let server = TestServer::start(&format!("authorization {{ token: \"{token}\" }}"));
    let auth = Auth { token: Some(secret_token(token)), ..Auth::default() };
    let js = plant_through(client_with(&auth, &server.url()).await).await;
    let p = pipeline_with(
        &with_source_lines("token = \"${NATS_TOKEN}\""),
        &[("NATS_URL", &server.url()), ("NATS_TOKEN", token)],
    );
    let client = stator_engine::source::connect(&p.source).await.unwrap();
    run_drained(&p, client).await;
    assert_eq!(alerts(&js).await.len(), 1);
}

fn secret_token(s: &str) -> Secret {
    let p = pipeline(&with_source_lines(&format!("token = \"{s}\"")), "nats://127.0.0.1:1");
    p.source.auth.token.expect("token")
}

async fn run_drained(p: &stator_engine::config::Pipeline, client: async_nats::Client) {
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let stats = std::sync::Arc::new(stator_engine::worker::Stats::default());
    let run = stator_engine::worker::run(std::sync::Arc::new(p.clone()), client, rx, stats, RunMode::Drain);
    tokio::time::timeout(std::time::Duration::from_secs(60), run).await.expect("drains in time").expect("runs");
}

#[tokio::test]
async fn an_nkey_seed_file_authenticates() {
    let key = nkeys::KeyPair::new_user();
    let server = TestServer::start(&format!("authorization {{ users: [ {{ nkey: \"{}\" }} ] }}", key.public_key()));
    let dir = tempfile::tempdir().unwrap();
    let seed_file = dir.path().join("stator.nk");
    std::fs::write(&seed_file, key.seed().unwrap()).unwrap();
    let text = with_source_lines(&format!("nkey_seed_file = \"{}\"", seed_file.display()));
    let p = pipeline(&text, &server.url());
    let js = plant_through(client_with(&p.source.auth, &server.url()).await).await;
    let client = stator_engine::source::connect(&p.source).await.unwrap();
    run_drained(&p, client).await;
    assert_eq!(alerts(&js).await.len(), 1);
}

#[tokio::test]
async fn a_creds_file_authenticates_against_an_operator_mode_server() {
    // Operator, accounts and user made in Rust (tests/e2e/creds.rs): signed NATS JWTs.
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&crate::creds::operator_setup(dir.path()));
    let creds = dir.path().join("stator.creds");
    assert!(
        async_nats::connect(server.url()).await.is_err(),
        "an operator-mode server refuses a client without credentials"
    );

    let text = with_source_lines(&format!("creds_file = \"{}\"", creds.display()));
    let p = pipeline(&text, &server.url());
    let js = plant_through(client_with(&p.source.auth, &server.url()).await).await;
    let client = stator_engine::source::connect(&p.source).await.unwrap();
    run_drained(&p, client).await;
    assert_eq!(alerts(&js).await.len(), 1);
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
fn certificates(dir: &Path) {
    let sh = |script: &str| {
        let ok = Command::new("sh").arg("-c").arg(script).current_dir(dir).stderr(Stdio::null()).status().expect("sh");
        assert!(ok.success(), "{script}");
    };
    sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=stator-test-ca -keyout ca-key.pem -out ca.pem");
    for (name, ext) in
        [("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", "extendedKeyUsage=clientAuth")]
    {
        sh(&format!(
            "openssl req -newkey rsa:2048 -nodes -subj /CN={name} -keyout {name}-key.pem -out {name}.csr && \
             printf '{ext}\\n' > {name}.ext && \
             openssl x509 -req -in {name}.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 \
               -extfile {name}.ext -out {name}.pem"
        ));
    }
}

#[tokio::test]
async fn tls_with_a_custom_ca_and_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let d = dir.path().display();
    let server = TestServer::start(&format!(
        "tls {{ cert_file: \"{d}/server.pem\"\n key_file: \"{d}/server-key.pem\"\n ca_file: \"{d}/ca.pem\"\n verify: true }}"
    ));
    let text = with_source_lines(&format!(
        "tls_ca_file = \"{d}/ca.pem\"\ntls_cert_file = \"{d}/client.pem\"\ntls_key_file = \"{d}/client-key.pem\""
    ));
    let p = pipeline(&text, &server.url());
    let js = plant_through(client_with(&p.source.auth, &server.url()).await).await;
    let client = stator_engine::source::connect(&p.source).await.unwrap();
    run_drained(&p, client).await;
    assert_eq!(alerts(&js).await.len(), 1);

    // Without a client certificate the server refuses the connection.
    let refused = async_nats::ConnectOptions::new()
        .add_root_certificates(dir.path().join("ca.pem"))
        .require_tls(true)
        .connect(server.url())
        .await;
    assert!(refused.is_err());
}
