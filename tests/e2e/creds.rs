//! Decentralised NATS auth for the `.creds` test, made in Rust: an operator, a system account
//! and a JetStream-enabled account signed by it, and a user of that account, as NATS JWTs
//! (v2 claims, the format nats-server and the nsc tool use), with `nkeys` for the keys and
//! signatures.
//!
//! A JWT is `base64url(header).base64url(claims).base64url(signature)`, the signature an
//! ed25519 signature by the issuer's nkey over the first two parts; `jti` is the base32
//! SHA-512/256 of the claims without it.

use std::path::Path;

use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use nkeys::KeyPair;
use serde_json::{Value, json};

/// Signs `nats` claims about `subject`, issued by `issuer`.
fn encode(name: &str, subject: &KeyPair, issuer: &KeyPair, nats: Value) -> String {
    let header = json!({ "typ": "JWT", "alg": "ed25519-nkey" });
    let mut claims = json!({
        "iat": time::OffsetDateTime::now_utc().unix_timestamp(),
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject.public_key(),
        "nats": nats,
    });
    let hash = ring::digest::digest(&ring::digest::SHA512_256, claims.to_string().as_bytes());
    claims["jti"] = BASE32_NOPAD.encode(hash.as_ref()).into();
    let signed = format!(
        "{}.{}",
        BASE64URL_NOPAD.encode(header.to_string().as_bytes()),
        BASE64URL_NOPAD.encode(claims.to_string().as_bytes())
    );
    let signature = issuer.sign(signed.as_bytes()).expect("sign");
    format!("{signed}.{}", BASE64URL_NOPAD.encode(&signature))
}

/// Writes `dir/operator.jwt` and `dir/stator.creds`, and returns the nats-server config lines
/// (operator, system account, memory resolver with both accounts preloaded).
pub fn operator_setup(dir: &Path) -> String {
    let (operator, system, account, user) =
        (KeyPair::new_operator(), KeyPair::new_account(), KeyPair::new_account(), KeyPair::new_user());
    let operator_jwt = encode(
        "stator-test",
        &operator,
        &operator,
        json!({ "system_account": system.public_key(), "type": "operator", "version": 2 }),
    );
    let account_claims = |limits: Value| json!({ "limits": limits, "default_permissions": { "pub": {}, "sub": {} }, "type": "account", "version": 2 });
    // A partial `limits` leaves the rest at 0 (no connections): state every one.
    let unlimited = json!({
        "subs": -1, "conn": -1, "leaf": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1,
    });
    let system_jwt = encode(
        "SYS",
        &system,
        &operator,
        account_claims(
            json!({ "subs": -1, "conn": -1, "leaf": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true }),
        ),
    );
    let account_jwt = encode("PLANT", &account, &operator, account_claims(unlimited));
    let user_jwt = encode(
        "stator",
        &user,
        &account,
        json!({ "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2 }),
    );
    let seed = user.seed().expect("seed");
    let creds = format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    );
    std::fs::write(dir.join("operator.jwt"), &operator_jwt).expect("operator.jwt");
    std::fs::write(dir.join("stator.creds"), creds).expect("stator.creds");
    format!(
        "operator: \"{}\"\nsystem_account: {sys}\nresolver: MEMORY\nresolver_preload: {{\n  {sys}: \"{system_jwt}\"\n  {acc}: \"{account_jwt}\"\n}}\n",
        dir.join("operator.jwt").display(),
        sys = system.public_key(),
        acc = account.public_key(),
    )
}
