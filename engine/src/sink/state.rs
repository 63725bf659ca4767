//! Alert state per (pipeline, rule, key), kept in a NATS KV bucket so that a restarted
//! worker neither forgets an open alert nor raises it twice.

use std::collections::HashMap;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;

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
        crate::kv::push_escaped(&mut out, k);
    }
    out
}

/// Opens (creating when missing, at `replicas` copies: those of the source stream, so that
/// the state survives what the stream survives) the state bucket.
///
/// # Errors
/// The NATS error as text.
pub async fn open(js: &jetstream::Context, bucket: &str, replicas: usize) -> Result<kv::Store, String> {
    crate::kv::open_or_create(
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

/// Loads every state of `pipeline`.
///
/// # Errors
/// The NATS error as text.
pub async fn load(store: &kv::Store, pipeline: &str) -> Result<HashMap<String, RuleState>, String> {
    let mut states = HashMap::new();
    for (key, bytes) in crate::kv::entries(store, &format!("{pipeline}.")).await? {
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
