//! Where the archive lives: a local directory or an object store URL.
//!
//! `file://./archive` or a plain path (the default), `s3://bucket/prefix`, `gs://bucket/prefix`,
//! `az://container/prefix`. Cloud credentials, region and endpoint come from the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
//! `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`...) or from options.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;

/// An archive location that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    /// The URL is malformed or its scheme unknown.
    #[error("archive URL `{url}`: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The store could not be set up (missing credentials, unreadable directory...).
    #[error("archive `{url}`: {source}")]
    Store {
        /// The URL.
        url: String,
        /// The object store's error.
        source: object_store::Error,
    },
}

/// An opened archive location.
#[derive(Debug, Clone)]
pub struct ArchiveLocation {
    /// The URL as given.
    pub url: String,
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// The prefix inside the store.
    pub prefix: Path,
    /// The URL DataFusion registers the store under (`file:///`, `s3://bucket`...).
    pub store_url: String,
}

impl ArchiveLocation {
    /// Opens `url`; `options` are passed to cloud stores (`endpoint`, `region`,
    /// `access_key_id`, `allow_http`...), on top of the environment.
    ///
    /// # Errors
    /// [`LocationError`].
    pub fn open(url: &str, options: &[(String, String)]) -> Result<Self, LocationError> {
        let bad = |reason: &str| LocationError::Url { url: url.to_owned(), reason: reason.to_owned() };
        let store_err = |source| LocationError::Store { url: url.to_owned(), source };
        if !url.contains("://") || url.starts_with("file://") {
            let dir = url.strip_prefix("file://").unwrap_or(url);
            std::fs::create_dir_all(dir).map_err(|e| bad(&format!("cannot create directory: {e}")))?;
            let abs = std::fs::canonicalize(dir).map_err(|e| bad(&e.to_string()))?;
            let store = LocalFileSystem::new_with_prefix(&abs).map_err(store_err)?;
            return Ok(Self {
                url: url.to_owned(),
                store: Arc::new(store),
                prefix: Path::default(),
                store_url: format!("file://{}", abs.display()),
            });
        }
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let bucket = parsed.host_str().ok_or_else(|| bad("no bucket"))?.to_owned();
        let prefix = Path::from(parsed.path().trim_start_matches('/'));
        let opts = options.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone()));
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            "s3" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(&bucket);
                for (k, v) in opts {
                    let key = k.parse().map_err(|_| bad(&format!("unknown S3 option `{k}`")))?;
                    b = b.with_config(key, v);
                }
                Arc::new(b.build().map_err(store_err)?)
            }
            "gs" => {
                let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_bucket_name(&bucket);
                for (k, v) in opts {
                    let key = k.parse().map_err(|_| bad(&format!("unknown GCS option `{k}`")))?;
                    b = b.with_config(key, v);
                }
                Arc::new(b.build().map_err(store_err)?)
            }
            "az" | "azure" => {
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env().with_container_name(&bucket);
                for (k, v) in opts {
                    let key = k.parse().map_err(|_| bad(&format!("unknown Azure option `{k}`")))?;
                    b = b.with_config(key, v);
                }
                Arc::new(b.build().map_err(store_err)?)
            }
            other => return Err(bad(&format!("unknown scheme `{other}`: use a path, file://, s3://, gs:// or az://"))),
        };
        Ok(Self { url: url.to_owned(), store, prefix, store_url: format!("{}://{bucket}", parsed.scheme()) })
    }

    /// Whether `key` is an option the store of `url`'s scheme knows (every key is refused for
    /// local directories, which take none).
    pub fn knows_option(url: &str, key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        match url.split_once("://").map(|(scheme, _)| scheme) {
            Some("s3") => key.parse::<object_store::aws::AmazonS3ConfigKey>().is_ok(),
            Some("gs") => key.parse::<object_store::gcp::GoogleConfigKey>().is_ok(),
            Some("az" | "azure") => key.parse::<object_store::azure::AzureConfigKey>().is_ok(),
            _ => false,
        }
    }

    /// The full object path of `relative` below the prefix. `relative` is taken as already
    /// escaped (partition values are, by [`super::sanitize`]), so `%2F` stays `%2F`.
    pub fn path(&self, relative: &str) -> Path {
        let base = self.prefix.as_ref().trim_end_matches('/');
        let full = if base.is_empty() { relative.to_owned() } else { format!("{base}/{relative}") };
        Path::parse(&full).unwrap_or_else(|_| Path::from(full))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_to_stores_and_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let local = ArchiveLocation::open(dir.path().to_str().unwrap(), &[]).unwrap();
        assert!(local.store_url.starts_with("file:///"));
        let opts = [
            ("region".to_owned(), "eu-central-1".to_owned()),
            ("access_key_id".to_owned(), "x".to_owned()),
            ("secret_access_key".to_owned(), "y".to_owned()),
        ];
        let s3 = ArchiveLocation::open("s3://plant-archive/stator/v1", &opts).unwrap();
        assert_eq!((s3.store_url.as_str(), s3.prefix.as_ref()), ("s3://plant-archive", "stator/v1"));
        assert_eq!(s3.path("readings/x.parquet").as_ref(), "stator/v1/readings/x.parquet");
        let e = ArchiveLocation::open("ftp://x/y", &[]).unwrap_err().to_string();
        assert!(e.contains("unknown scheme `ftp`"), "{e}");
        let e = ArchiveLocation::open("s3://b/p", &[("colour".into(), "red".into())]).unwrap_err().to_string();
        assert!(e.contains("unknown S3 option `colour`"), "{e}");
    }
}
