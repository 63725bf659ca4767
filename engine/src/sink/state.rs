//! Alert state per (pipeline, rule, key), kept in a NATS KV bucket so that a restarted
//! worker neither forgets an open alert nor raises it twice.

use std::collections::HashMap;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::TryStreamExt;

use crate::alert::RuleState;

/// The KV key of a rule's state for one key: `{pipeline}.{rule}.{key...}`, each key token
/// escaped to the KV key alphabet (`=HH` per byte outside `[A-Za-z0-9_-]`).
pub fn state_key(pipeline: &str, rule: &str, key: &[String]) -> String {
    let mut out = String::with_capacity(pipeline.len() + rule.len() + 32);
    out.push_str(pipeline);
    out.push('.');
    out.push_str(rule);
    for k in key {
        out.push('.');
        push_escaped(&mut out, k);
    }
    out
}

/// Appends `token` to a KV key, escaped to the KV key alphabet: `=HH` per byte outside
/// `[A-Za-z0-9_-]`.
pub fn push_escaped(out: &mut String, token: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in token.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push('=');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// Opens (creating when missing, at `replicas` copies: those of the source stream, so that
/// the state survives what the stream survives) the state bucket.
///
/// # Errors
/// The NATS error as text.
pub async fn open(js: &jetstream::Context, bucket: &str, replicas: usize) -> Result<kv::Store, String> {
    open_or_create(
        js,
        kv::Config {
            bucket: bucket.to_owned(),
            description: "Stator alert state per pipeline, rule and key".into(),
            history: 1,
            num_replicas: replicas.max(1),
            ..Default::default()
        },
    )
    .await
}

/// Opens bucket `config.bucket`, creating it with `config` when it is missing (an existing
/// one is used as it is).
///
/// # Errors
/// The NATS error as text.
pub async fn open_or_create(js: &jetstream::Context, config: kv::Config) -> Result<kv::Store, String> {
    match js.get_key_value(&config.bucket).await {
        Ok(store) => Ok(store),
        Err(_) => js.create_key_value(config).await.map_err(|e| e.to_string()),
    }
}

/// Every entry of `store` whose key starts with `prefix`, with its value.
///
/// # Errors
/// The NATS error as text.
pub async fn entries(store: &kv::Store, prefix: &str) -> Result<Vec<(String, Bytes)>, String> {
    let keys: Vec<String> = store
        .keys()
        .await
        .map_err(|e| e.to_string())?
        .try_filter(|k| futures::future::ready(k.starts_with(prefix)))
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some(bytes) = store.get(&key).await.map_err(|e| e.to_string())? {
            out.push((key, bytes));
        }
    }
    Ok(out)
}

/// Loads every state of `pipeline`.
///
/// # Errors
/// The NATS error as text.
pub async fn load(store: &kv::Store, pipeline: &str) -> Result<HashMap<String, RuleState>, String> {
    let mut states = HashMap::new();
    for (key, bytes) in entries(store, &format!("{pipeline}.")).await? {
        match serde_json::from_slice::<RuleState>(&bytes) {
            Ok(s) => {
                states.insert(key, s);
            }
            Err(e) => tracing::warn!(key, error = %e, "ignoring unreadable alert state"),
        }
    }
    Ok(states)
}

/// Purges every state of `pipeline` (a finished replay's).
///
/// # Errors
/// The NATS error as text.
pub async fn forget(store: &kv::Store, pipeline: &str) -> Result<(), String> {
    for key in load(store, pipeline).await?.into_keys() {
        store.purge(&key).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Serializes a state for [`kv::Store::put`].
pub fn encode(state: &RuleState) -> Bytes {
    Bytes::from(serde_json::to_vec(state).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_escaped_to_the_kv_alphabet() {
        let key = vec!["munich".to_owned(), "cnc/001 ä".to_owned()];
        assert_eq!(state_key("p", "r", &key), "p.r.munich.cnc=2F001=20=C3=A4");
    }
}
