//! Small helpers over NATS KV buckets, shared by the alert state and the roll of workers.

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::TryStreamExt;

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

/// Opens bucket `config.bucket`, creating it with `config` when it is missing (an existing
/// one is used as it is, also one another worker created at the same moment).
///
/// # Errors
/// The NATS error as text.
pub async fn open_or_create(js: &jetstream::Context, config: kv::Config) -> Result<kv::Store, String> {
    if let Ok(store) = js.get_key_value(&config.bucket).await {
        return Ok(store);
    }
    let bucket = config.bucket.clone();
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Several workers starting together: another one created it first.
        Err(e) => js.get_key_value(&bucket).await.map_err(|_| e.to_string()),
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
